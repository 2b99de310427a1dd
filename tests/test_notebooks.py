"""The coursework notebooks run top to bottom, and are committed without outputs.

Each notebook is executed in a fresh kernel that runs *this* interpreter
(``sys.executable``, i.e. the project's virtual environment), whatever kernels the
machine has installed elsewhere: the kernel spec is written to a temporary folder and
handed to the kernel manager directly.
"""

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Seconds per cell; the notebooks are meant to finish in well under a minute.
CELL_TIMEOUT = 300


@pytest.fixture
def kernel_manager(tmp_path):
    """A kernel manager whose only ``python3`` kernel is this interpreter."""
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (this environment)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def execute(nb, kernel_manager, cwd):
    client = NotebookClient(
        nb,
        km=kernel_manager,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.notebook
def test_kernel_runs_this_interpreter(kernel_manager, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    execute(nb, kernel_manager, tmp_path)
    printed = nb.cells[0].outputs[0]["text"].strip()
    assert printed == sys.prefix, f"the kernel ran in {printed}, expected {sys.prefix}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path, kernel_manager):
    nb = nbformat.read(path, as_version=4)
    # A cell that raises stops the run with a CellExecutionError naming the cell.
    execute(nb, kernel_manager, path.parent)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or execution counts; "
        "clear all outputs before committing"
    )
