"""The package's layers: every import points down (or sideways), never up.

``common`` < ``ops`` < ``cuda`` < ``nn`` < ``datasets`` < ``detect`` < the command line,
demo and PTX check at the top. A lower layer that imported a higher one would tie the
NumPy operations to the networks, or the networks to the scenes; this test reads
every import statement of the package (those inside functions too) and fails on any
that climbs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import overfeat_scratch

PACKAGE = Path(overfeat_scratch.__file__).parent
LAYERS = ["common", "ops", "cuda", "nn", "datasets", "detect"]
TOP = len(LAYERS)  # modules directly in the package: cli, demo, arguments, ptx


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of the package in ``path``."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    return imports_in(path.read_text(), package)


def imports_in(text: str, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of the package in ``text``, the source of a
    module of ``package`` (relative imports resolve against it)."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import x`` imports the submodule x when there is one.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                as_module = PACKAGE.parent / (sub.replace(".", "/") + ".py")
                as_package = PACKAGE.parent / sub.replace(".", "/") / "__init__.py"
                found.append(
                    (node.lineno, sub if as_module.exists() or as_package.exists() else target)
                )
    return [(line, m) for line, m in found if m.split(".")[0] == PACKAGE.name]


def test_no_module_imports_from_a_layer_above():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for line, target in imports(path):
            if rank(target) > rank(source):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_every_module_sits_in_a_layer():
    """Each subpackage is a known layer, so the rule above covers every file."""
    folders = {p.parent.name for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
    assert folders <= set(LAYERS), folders - set(LAYERS)
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "arguments", "cli", "demo", "ptx"], top


def test_the_checker_resolves_and_ranks_imports():
    """The checker itself: relative and absolute imports, inside functions too, resolve
    to modules, and an ops module importing the networks would rank as climbing."""
    source = (
        "from ..nn import layers\n"
        "from . import pool\n"
        "from .boxes import iou\n"
        "def f():\n"
        "    import overfeat_scratch.detect.localize\n"
        "    import numpy\n"
    )
    found = imports_in(source, "overfeat_scratch.ops")
    assert found == [
        (1, "overfeat_scratch.nn.layers"),
        (2, "overfeat_scratch.ops.pool"),
        (3, "overfeat_scratch.ops.boxes"),
        (5, "overfeat_scratch.detect.localize"),
    ]
    ops = rank("overfeat_scratch.ops.conv")
    assert [rank(m) > ops for _, m in found] == [True, False, False, True]
    assert rank("overfeat_scratch.cli") > rank("overfeat_scratch.detect.localize")


def test_the_command_line_builds_its_parser_without_the_networks():
    """``overfeat-scratch --help`` (and every command's parsing) loads neither Numba nor
    the networks: the package's front door imports its names on first use."""
    import subprocess
    import sys

    code = (
        "import sys; from overfeat_scratch.cli import build_parser; build_parser(); "
        "print('numba' in sys.modules, 'overfeat_scratch.nn.layers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_front_door_names_resolve():
    from overfeat_scratch.nn.layers import Conv2d

    assert overfeat_scratch.Conv2d is Conv2d
    assert set(overfeat_scratch.__all__) <= set(dir(overfeat_scratch))
    with pytest.raises(AttributeError, match="no_such_name"):
        overfeat_scratch.no_such_name  # noqa: B018


def test_both_backends_implement_the_whole_interface_with_its_signatures():
    """The backend interface is the same on both sides: every operation of
    :class:`Backend` is implemented by the NumPy and the CUDA backend, taking the same
    parameters (so a layer never has to ask which backend it runs on)."""
    import inspect

    from overfeat_scratch.nn.backend import Backend, NumpyBackend
    from overfeat_scratch.nn.cuda_backend import CudaBackend

    def parameters(cls, name):
        member = inspect.getattr_static(cls, name)
        if isinstance(member, staticmethod):
            return list(inspect.signature(member.__func__).parameters)
        return list(inspect.signature(member).parameters)[1:]

    # The interface's own defaults, which a backend may keep.
    defaults = {"reshape"}
    operations = [
        name for name, member in vars(Backend).items() if callable(member) and name[0] != "_"
    ]
    assert {"conv2d_backward", "greedy_merge", "non_max_suppression"} <= set(operations)
    differ = []
    for backend in (NumpyBackend, CudaBackend):
        for name in operations:
            if name not in defaults and name not in vars(backend):
                differ.append(f"{backend.__name__}.{name}: missing")
            elif parameters(backend, name) != parameters(Backend, name):
                differ.append(f"{backend.__name__}.{name}{parameters(backend, name)}")
    assert not differ, differ
