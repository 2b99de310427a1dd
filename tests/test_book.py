"""The book in docs/: offline maths, chapter notes, navigation, captions, glossary.

Fast checks that need no browser and execute no chapter. ``docs/check_offline.py``
goes one step further on a built book: it renders a page in headless Chromium with
the network unreachable and counts the typeset formulas.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BUILD = DOCS / "_build" / "html"
OFFLINE_MATHJAX = "sphinx-mathjax-offline"

# Each chapter and the coursework notebook it names (the closest one where it has none).
NOTEBOOKS = {
    "convolution": "01_convolution.ipynb",
    "networks": "01_convolution.ipynb",
    "sliding": "02_sliding_window.ipynb",
    "offset_pooling": "03_offset_pooling.ipynb",
    "training": "04_training.ipynb",
    "localization": "05_localization.ipynb",
    "detection": "06_detection.ipynb",
    "pipeline": "06_detection.ipynb",
    "verification": "01_convolution.ipynb",
    "performance": "01_convolution.ipynb",
}
GLOSSARY_TERMS = (
    "window",
    "stride",
    "jump",
    "receptive field",
    "offset",
    "fine map",
    "coarse map",
    "candidate",
    "match score",
    "background class",
)


def load_check_offline():
    spec = importlib.util.spec_from_file_location("check_offline", DOCS / "check_offline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conf_values() -> dict:
    """The literal top-level assignments of docs/conf.py, read without running it."""
    values = {}
    for node in ast.parse((DOCS / "conf.py").read_text()).body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        values[target.id] = None
    return values


def toctrees(text: str) -> list[tuple[str, list[str]]]:
    """(caption, entries) of every toctree of a MyST page."""
    trees = []
    for block in re.findall(r"```\{toctree\}\n(.*?)```", text, re.S):
        caption = re.search(r"^:caption: (.+)$", block, re.M)
        entries = [line.strip() for line in block.splitlines() if line and line[0] != ":"]
        trees.append((caption.group(1) if caption else "", entries))
    return trees


def code_cells(text: str) -> list[tuple[dict, str]]:
    """(options, source) of every code cell of a MyST notebook page."""
    import yaml

    cells = []
    for body in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```$", text, re.S | re.M):
        lines = body.splitlines()
        options: dict = {}
        if lines and lines[0] == "---":
            end = lines.index("---", 1)
            options = yaml.safe_load("\n".join(lines[1:end])) or {}
            lines = lines[end + 1 :]
        while lines and re.match(r"^:\w[\w-]*:", lines[0]):
            key, value = re.match(r"^:(\w[\w-]*):\s*(.*)$", lines.pop(0)).groups()
            options[key] = yaml.safe_load(value)
        cells.append((options, "\n".join(lines)))
    return cells


def chapters() -> list[str]:
    trees = dict(toctrees((DOCS / "index.md").read_text()))
    return trees["Chapters"]


def test_conf_loads_mathjax_from_the_build_not_a_cdn():
    values = conf_values()
    assert OFFLINE_MATHJAX in values["extensions"]
    # A mathjax_path of its own would replace the local copy the extension sets.
    assert "mathjax_path" not in values
    assert "_static" in values["html_static_path"]
    for css in values["html_css_files"]:
        assert (DOCS / "_static" / css).is_file(), css


def test_the_docs_dependencies_include_the_offline_mathjax():
    text = (ROOT / "pyproject.toml").read_text()
    dev = re.search(r"^dev = \[(.*?)^\]", text, re.S | re.M).group(1)
    assert re.search(rf'"{OFFLINE_MATHJAX}[>=<~ ]', dev), "add it to the dev extra"


def test_the_offline_extension_ships_mathjax_and_points_sphinx_at_it():
    assert importlib.util.find_spec(OFFLINE_MATHJAX), (
        f"{OFFLINE_MATHJAX} is not installed: pip install -e '.[dev]'"
    )
    extension = importlib.import_module(OFFLINE_MATHJAX)

    class App:
        def __init__(self):
            self.config = type("Config", (), {})()
            self.events = []

        def connect(self, event, handler):
            self.events.append(event)

    app = App()
    extension.setup(app)
    path = app.config.mathjax_path
    assert not re.match(r"^(https?:)?//", path), path
    static = Path(extension.__file__).parent / "static"
    assert (static / path).is_file(), f"{path} is not among the shipped files"
    fonts = list((static / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert fonts, "MathJax's fonts are not shipped"
    assert "build-finished" in app.events  # when it copies the files into the build


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<script src="_static/mathjax/tex-chtml.js"></script>', []),
        (
            '<script defer src="https://cdn.example.org/m.js"></script>',
            ["https://cdn.example.org/m.js"],
        ),
        ("<script src='//cdn.example.org/require.js'></script>", ["//cdn.example.org/require.js"]),
        ('<link rel="stylesheet" href="http://example.org/x.css">', ["http://example.org/x.css"]),
        ('<link rel="canonical" href="https://example.org/page.html">', []),
        ('<a href="https://example.org/">a link to read later</a>', []),
    ],
)
def test_remote_loads_finds_scripts_and_stylesheets_only(html, expected):
    assert load_check_offline().remote_loads(html) == expected


def test_a_page_built_with_this_configuration_loads_no_remote_script(tmp_path):
    """One tiny page with a formula, built with docs/conf.py: MathJax comes from the build."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    source, out = tmp_path / "src", tmp_path / "html"
    source.mkdir()
    (source / "index.md").write_text("# Maths\n\nInline $x^2$ and\n\n$$\n\\sum_i w_i x_i\n$$\n")
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "-c", str(DOCS)]
        + [str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    page = (out / "index.html").read_text()
    assert load_check_offline().remote_loads(page) == []
    assert '_static/mathjax/tex-chtml.js"' in page or "_static/mathjax/tex-chtml.js?" in page
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_the_built_book_loads_no_remote_script():
    if not (BUILD / "_static" / "mathjax").is_dir():
        pytest.skip(f"no book built with the offline MathJax in {BUILD} (run `make docs`)")
    assert load_check_offline().check_pages(BUILD) == []


def test_every_chapter_names_its_notebook_under_its_title():
    assert sorted(chapters()) == sorted(NOTEBOOKS)
    for chapter, notebook in NOTEBOOKS.items():
        text = (DOCS / f"{chapter}.md").read_text()
        after_title = re.search(r"^# [^\n]+\n\n(.*?)\n\n", text, re.M | re.S).group(1)
        assert after_title.startswith("**Coursework:**"), chapter
        targets = re.findall(r"\{download\}`[^`<]*<([^>]+)>`", after_title)
        # The student version, which the docs build makes from the source notebook.
        assert targets == [f"_coursework/student/{notebook}"], (chapter, targets)
        assert (DOCS.parent / "notebooks" / notebook).is_file()


def test_performance_comes_last_and_the_reference_pages_are_listed():
    assert chapters()[-1] == "performance"
    index = (DOCS / "index.md").read_text()
    table = index.split("## From the paper to the code", 1)[1].split("\n\n")[2]
    rows = [row for row in table.splitlines() if row.startswith("|") and "](" in row]
    assert "[Performance](performance.md)" in rows[-1]
    listed = [entry for _, entries in toctrees(index) for entry in entries]
    assert "glossary" in listed and "api" in listed


def test_the_glossary_defines_the_shared_terms():
    text = (DOCS / "glossary.md").read_text()
    block = re.search(r"```\{glossary\}\n(.*?)```", text, re.S).group(1)
    terms = {line.strip() for line in block.splitlines() if line and not line[0].isspace()}
    missing = [term for term in GLOSSARY_TERMS if term not in terms]
    assert not missing, missing


def test_the_api_page_documents_every_module():
    text = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", text, re.M))
    package = ROOT / "overfeat_scratch"
    modules = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    missing = sorted(modules - documented)
    assert not missing, f"add `.. automodule:: NAME` under its layer in docs/api.md: {missing}"
    assert not documented - modules, "docs/api.md documents modules that no longer exist"


def test_figures_have_captions_and_setup_cells_are_hidden():
    names = []
    for chapter in chapters():
        cells = code_cells((DOCS / f"{chapter}.md").read_text())
        if not cells:
            continue
        assert "hide-input" in cells[0][0].get("tags", []), f"{chapter}: the setup cell"
        for options, source in cells:
            last = source.strip().splitlines()[-1] if source.strip() else ""
            if "plt.show()" not in source and last != "fig":
                continue
            figure = options.get("mystnb", {}).get("figure", {})
            assert figure.get("caption"), f"{chapter}: a figure without caption:\n{source[:200]}"
            names.append(figure.get("name"))
    assert all(names) and len(set(names)) == len(names), names
