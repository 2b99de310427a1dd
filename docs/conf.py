"""Sphinx configuration for the overfeat-scratch documentation.

Every chapter is an executable MyST-NB text notebook: its code cells run at each
build, and a cell that raises fails the build, so the docs cannot drift from the
package they describe. Run ``make docs`` (it sets ``NUMBA_ENABLE_CUDASIM=1`` so
that the CUDA kernels run on the Numba simulator on a machine without a GPU).

The built book needs no network: MathJax is served from the build's own
``_static/mathjax`` folder (the ``sphinx-mathjax-offline`` extension), and the API
reference (``api.md``) links every module to its highlighted source (``viewcode``).
"""

import os
import sys
from pathlib import Path

# autodoc imports the CUDA modules: without an NVIDIA GPU they must load on Numba's
# simulator, which has to be chosen before Numba is first imported. The Makefile sets
# this already; the line below covers a plain ``sphinx-build`` too (the chapters'
# kernels inherit it, as they do from the Makefile).
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# The chapters link to the coursework notebooks as a student gets them: the committed
# notebooks hold the reference solutions, so the book offers the student versions,
# built here from them (tools/coursework.py, the generator of `make coursework`).
DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tools"))
import coursework  # noqa: E402

coursework.build(DOCS.parent / "notebooks", DOCS / "_coursework")

project = "overfeat-scratch"
author = "overfeat-scratch authors"
copyright = "overfeat-scratch authors"
release = "0.1.0"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    # MathJax 3 shipped inside a PyPI wheel: it sets ``mathjax_path`` to a local copy
    # and copies the files into ``_static/mathjax``, so formulas render offline.
    "sphinx-mathjax-offline",
]

exclude_patterns = [
    "_build",
    "_coursework",
    "jupyter_execute",
    "**.ipynb_checkpoints",
    "Thumbs.db",
    ".DS_Store",
]

# MyST: $...$ and $$...$$ maths, LaTeX environments, ::: fences.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Execute every notebook at every build; a failing cell is a failing build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# The API reference: members in source order, the package's own docstrings only.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
# Docstrings cross-reference by short name (:func:`.merge_fast`); where the NumPy
# operation and its CUDA twin share a name, they name the module in full.
# Unresolved references stay plain text (nitpicky is off).

html_theme = "sphinx_book_theme"
html_title = "overfeat-scratch"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path = ["_static"]
# Long lines in code cells wrap instead of running past the column.
html_css_files = ["custom.css"]
