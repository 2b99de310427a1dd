"""Build the student and the instructor versions of the coursework notebooks.

The notebooks in ``notebooks/`` are the sources, and they hold the reference solutions
between nbgrader's markers, each on a line of its own::

    def my_bias_grad(dy):
        ### BEGIN SOLUTION
        return dy.sum(axis=(0, 2, 3))
        ### END SOLUTION

From every source this writes two notebooks, outputs cleared:

- ``instructor/``: the marker lines removed, the solutions kept;
- ``student/``: every solution replaced by a placeholder, at the marker's indentation:

  - inside a function (an indented marker): ``# Your code here: replace the line
    below.`` and ``return None``;
  - at the top level of a cell: ``name = None  # your code here`` for every name the
    solution assigns at its top level, in order (names that start with ``_`` are
    left out: use them for intermediate values);
  - ``### BEGIN SOLUTION NO STUB``: nothing, for a solution that extends code left
    outside the markers (the student starts from that code).

Only the standard library is used. Run ``python tools/coursework.py`` (``make
coursework``); it writes into ``build/coursework/``.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
BEGIN_NO_STUB = "### BEGIN SOLUTION NO STUB"
END = "### END SOLUTION"
FUNCTION_STUB = ["# Your code here: replace the line below.", "return None"]
VERSIONS = ("student", "instructor")

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "notebooks"
OUT_DIR = ROOT / "build" / "coursework"


class MarkerError(ValueError):
    """Solution markers that do not pair up, or a solution without a stub."""


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def solution_blocks(source: str) -> list[tuple[int, int, str]]:
    """``(begin line, end line, kind)`` of every solution block of a cell's source.

    Line numbers count from 0 and point at the marker lines; ``kind`` is ``"stub"``
    or ``"no stub"``. Unpaired or nested markers are a :class:`MarkerError`.
    """
    blocks, begin, kind = [], None, None
    for number, line in enumerate(source.split("\n")):
        marker = line.strip()
        if marker in (BEGIN, BEGIN_NO_STUB):
            if begin is not None:
                raise MarkerError(f"line {number + 1}: {marker!r} inside another solution")
            begin, kind = number, "no stub" if marker == BEGIN_NO_STUB else "stub"
        elif marker == END:
            if begin is None:
                raise MarkerError(f"line {number + 1}: {END!r} without {BEGIN!r}")
            blocks.append((begin, number, kind))
            begin = None
        elif marker.startswith("### BEGIN") or marker.startswith("### END"):
            raise MarkerError(f"line {number + 1}: unknown marker {marker!r}")
    if begin is not None:
        raise MarkerError(f"line {begin + 1}: {BEGIN!r} without {END!r}")
    return blocks


def stub(solution: list[str], indent: str, kind: str) -> list[str]:
    """The placeholder lines that replace one solution in the student version."""
    if kind == "no stub":
        return []
    if indent:
        return [indent + line for line in FUNCTION_STUB]
    tree = ast.parse("\n".join(solution))
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            for element in elements:
                if isinstance(element, ast.Name) and not element.id.startswith("_"):
                    if element.id not in names:
                        names.append(element.id)
    if not names:
        raise MarkerError("a top-level solution that assigns no name: nothing to stub")
    return [f"{name} = None  # your code here" for name in names]


def split_source(source: str) -> dict[str, str]:
    """``{"student": ..., "instructor": ...}``: one cell's source in both versions."""
    blocks = solution_blocks(source)
    if not blocks:
        return {version: source for version in VERSIONS}
    lines = source.split("\n")
    student, instructor, start = [], [], 0
    for begin, end, kind in blocks:
        before = lines[start:begin]
        solution = lines[begin + 1 : end]
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        student += before + stub([line[len(indent) :] for line in solution], indent, kind)
        instructor += before + solution
        start = end + 1
    student += lines[start:]
    instructor += lines[start:]
    return {"student": "\n".join(student), "instructor": "\n".join(instructor)}


def build_notebook(notebook: dict) -> dict[str, dict]:
    """Both versions of a notebook (parsed JSON), with outputs and counts cleared."""
    versions = {version: json.loads(json.dumps(notebook)) for version in VERSIONS}
    for index, cell in enumerate(notebook["cells"]):
        try:
            sources = split_source(_source(cell))
        except MarkerError as error:
            raise MarkerError(f"cell {index}: {error}") from None
        if cell["cell_type"] != "code" and sources["student"] != sources["instructor"]:
            raise MarkerError(f"cell {index}: solution markers in a {cell['cell_type']} cell")
        for version, built in versions.items():
            target = built["cells"][index]
            target["source"] = sources[version]
            if target["cell_type"] == "code":
                target["outputs"] = []
                target["execution_count"] = None
    return versions


def build(source_dir: Path = SOURCE_DIR, out_dir: Path = OUT_DIR) -> dict[str, list[Path]]:
    """Write ``out_dir/student/*.ipynb`` and ``out_dir/instructor/*.ipynb``."""
    sources = sorted(Path(source_dir).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no notebooks in {source_dir}")
    written: dict[str, list[Path]] = {version: [] for version in VERSIONS}
    for version in VERSIONS:  # no stale notebook of an earlier build stays behind
        for stale in (Path(out_dir) / version).glob("*.ipynb"):
            stale.unlink()
    for path in sources:
        try:
            versions = build_notebook(json.loads(path.read_text(encoding="utf-8")))
        except MarkerError as error:
            raise MarkerError(f"{path.name}: {error}") from None
        for version, notebook in versions.items():
            target = Path(out_dir) / version / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
            target.write_text(text, encoding="utf-8")
            written[version].append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE_DIR, help="source notebooks")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args(argv)
    try:
        written = build(args.source, args.out)
    except MarkerError as error:
        print(f"coursework: {error}", file=sys.stderr)
        return 1
    for version, paths in written.items():
        print(f"{len(paths)} {version} notebooks in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
