"""Sphinx configuration for the overfeat-scratch documentation.

Every chapter is an executable MyST-NB text notebook: its code cells run at each
build, and a cell that raises fails the build, so the docs cannot drift from the
package they describe. Run ``make docs`` (it sets ``NUMBA_ENABLE_CUDASIM=1`` so
that the CUDA kernels run on the Numba simulator on a machine without a GPU).
"""

project = "overfeat-scratch"
author = "overfeat-scratch authors"
copyright = "overfeat-scratch authors"
release = "0.1.0"

extensions = ["myst_nb"]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# MyST: $...$ and $$...$$ maths, LaTeX environments, ::: fences.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Execute every notebook at every build; a failing cell is a failing build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

html_theme = "sphinx_book_theme"
html_title = "overfeat-scratch"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path: list[str] = []
