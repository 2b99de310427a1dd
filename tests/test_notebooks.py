"""The coursework notebooks run top to bottom, and are committed without outputs.

The committed notebooks are the sources: they hold the reference solutions between
``### BEGIN SOLUTION`` and ``### END SOLUTION``. ``tools/coursework.py`` builds from
them a student version (solutions replaced by placeholders) and an instructor version
(solutions in); both are executed here. Every check of the instructor version must say
*correct*, every check of the student version *not attempted yet*, and the student
version must hold no solution.

Each notebook is executed in a fresh kernel that runs *this* interpreter
(``sys.executable``, i.e. the project's virtual environment), whatever kernels the
machine has installed elsewhere: the kernel spec is written to a temporary folder and
handed to the kernel manager directly.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Seconds per cell; the notebooks are meant to finish in well under a minute.
CELL_TIMEOUT = 300
# The lines the checks print, one per check call: the exercise, then the verdict.
CHECK_LINE = re.compile(r"^(Exercise [^:\n]*): (.*)$", re.MULTILINE)
# Check lines per notebook (a check in a loop prints several); update when adding one.
CHECKS = {
    "01_convolution.ipynb": 9,
    "02_sliding_window.ipynb": 8,
    "03_offset_pooling.ipynb": 8,
    "04_training.ipynb": 7,
    "05_localization.ipynb": 5,
    "06_detection.ipynb": 5,
}
# What code after an unsolved exercise prints instead of running.
SKIPPED = "finish Exercise"


def load_generator():
    spec = importlib.util.spec_from_file_location("coursework", ROOT / "tools" / "coursework.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


coursework = load_generator()
MARKERS = {coursework.BEGIN, coursework.BEGIN_NO_STUB, coursework.END}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both versions of every notebook, built by the generator into a temporary folder."""
    out = tmp_path_factory.mktemp("coursework")
    coursework.build(NOTEBOOK_DIR, out)
    return out


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


def printed(nb):
    """Everything the notebook's code cells printed, in order."""
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )


def outside_and_inside(source):
    """The lines of a cell's source outside the solution markers, and those inside."""
    outside, inside, solving = [], [], False
    for line in source.split("\n"):
        marker = line.strip()
        if marker.startswith(coursework.BEGIN):
            solving = True
        elif marker == coursework.END:
            solving = False
        else:
            (inside if solving else outside).append(line)
    return outside, inside


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"
    assert sorted(CHECKS) == [path.name for path in NOTEBOOKS], "CHECKS lists every notebook"


@pytest.mark.notebook
def test_kernel_runs_this_interpreter(kernel_manager, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    execute(nb, kernel_manager, tmp_path)
    printed = nb.cells[0].outputs[0]["text"].strip()
    assert printed == sys.prefix, f"the kernel ran in {printed}, expected {sys.prefix}"


@pytest.mark.notebook
@pytest.mark.parametrize("version", ["instructor", "student"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path, version, built, kernel_manager):
    notebook = built / version / path.name
    nb = nbformat.read(notebook, as_version=4)
    # A cell that raises stops the run with a CellExecutionError naming the cell.
    execute(nb, kernel_manager, notebook.parent)
    text = printed(nb)
    checks = CHECK_LINE.findall(text)
    assert len(checks) == CHECKS[path.name], (
        f"{version}/{path.name}: {len(checks)} check lines, expected {CHECKS[path.name]}: {checks}"
    )
    expected = "correct" if version == "instructor" else "not attempted yet"
    wrong = [f"{name}: {verdict}" for name, verdict in checks if not verdict.startswith(expected)]
    assert not wrong, f"{version}/{path.name}: checks that do not say {expected!r}: {wrong}"
    if version == "instructor":
        # Every solved exercise lets the code after it run.
        skipped = [line for line in text.splitlines() if line.startswith(SKIPPED)]
        assert not skipped, f"{path.name}: code skipped although solved: {skipped}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_student_version_holds_no_solution(path, built):
    raw = (built / "student" / path.name).read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in raw and "END SOLUTION" not in raw
    source = nbformat.read(path, as_version=4)
    student = nbformat.read(built / "student" / path.name, as_version=4)
    outside, inside = set(), set()
    for cell in source.cells:
        lines = outside_and_inside(cell.source)
        outside.update(line.strip() for line in lines[0])
        inside.update(line.strip() for line in lines[1])
    assert inside, f"{path.name} has no solution"
    # A solution line may also be code outside the markers (a `return out`, say).
    solution_only = {line for line in inside - outside if line}
    student_lines = {line.strip() for cell in student.cells for line in cell.source.split("\n")}
    leaked = solution_only & student_lines
    assert not leaked, f"{path.name}: the student version shows solution lines {sorted(leaked)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_instructor_version_is_the_source_without_markers(path, built):
    source = nbformat.read(path, as_version=4)
    instructor = nbformat.read(built / "instructor" / path.name, as_version=4)
    assert len(instructor.cells) == len(source.cells)
    for mine, theirs in zip(instructor.cells, source.cells, strict=True):
        kept = [line for line in theirs.source.split("\n") if line.strip() not in MARKERS]
        assert mine.source.split("\n") == kept


def test_generator_stubs():
    cells = [
        "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
        "### BEGIN SOLUTION\n_t = 3\na, b = _t, 4\nc = a + b\n### END SOLUTION\nprint(c)",
        "xs = [1]  # add more\n### BEGIN SOLUTION NO STUB\nxs = [1, 2, 3]\n### END SOLUTION",
    ]
    split = [coursework.split_source(cell) for cell in cells]
    assert split[0]["student"] == (
        "def f(x):\n    # Your code here: replace the line below.\n    return None"
    )
    assert split[0]["instructor"] == "def f(x):\n    return 2 * x"
    assert split[1]["student"] == (
        "a = None  # your code here\nb = None  # your code here\n"
        "c = None  # your code here\nprint(c)"
    )
    assert split[2]["student"] == "xs = [1]  # add more"
    assert split[2]["instructor"] == "xs = [1]  # add more\nxs = [1, 2, 3]"
    for broken in (
        "### BEGIN SOLUTION\nx = 1",
        "x = 1\n### END SOLUTION",
        "### BEGIN SOLUTION\n### END SOLUTION",
    ):
        with pytest.raises(coursework.MarkerError):
            coursework.split_source(broken)


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
