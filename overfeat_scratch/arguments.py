"""The command line's checks: typed values with their ranges, and safe output paths.

Every numeric flag is parsed by one of the types below, so a value out of range is
refused by argparse before any work starts, in one line that names the flag, the
value and the range (``argument --top: expected an integer >= 1, got 0``).

Every output path is checked before any work starts too (:func:`check_output`):

- an output that exists is refused unless ``--overwrite`` is given (a folder
  counts as existing when it holds anything);
- an output never is, holds, or lies inside one of the command's inputs, with or
  without ``--overwrite``: drawings written into the folder of the images they
  are drawn from would replace them.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from .common.checks import InputError

# Seeds go to NumPy's generators and into 32-bit kernel seeds.
MAX_SEED = 2**32 - 1


def describe_range(kind: str, low=None, high=None, low_open=False, high_open=False) -> str:
    """``"an integer >= 1"``, ``"a number in [0, 1]"``, ``"a number > 0"``..."""
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high}"
    return kind


def integer(low: int | None = None, high: int | None = None):
    """An argparse type: a decimal integer in ``[low, high]`` (``None``: no limit)."""
    expected = describe_range("an integer", low, high)

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a finite number in the range (open at an end when asked)."""
    expected = describe_range("a finite number", low, high, low_open, high_open)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


positive = integer(1)
count = integer(0)
seed = integer(0, MAX_SEED)
probability = number(0, 1)
score = number(0)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit with status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _get_values(self, action, arg_strings):
        # argparse drops a value "--" ("--top=--") and would hand the command an empty
        # list in place of a number.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            raise argparse.ArgumentError(action, "expected a value, got '--'")
        return super()._get_values(action, arg_strings)


# --------------------------------------------------------------------------------------
# Output paths


def _resolved(path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_input(path, flag: str, inputs=()) -> None:
    """Refuse an output that is an input, lies inside an input folder or holds an input."""
    target = _resolved(path)
    for given in inputs:
        if given is None:
            continue
        source = _resolved(given)
        if _inside(target, source) or _inside(source, target):
            raise InputError(
                f"{flag} {path}: would write into the input {given}; outputs never go into, "
                "over or around an input: choose another path"
            )


def check_output(
    path, flag: str, *, folder: bool, overwrite: bool = False, inputs=(), suffix=None
) -> Path:
    """Check an output path before any work: returns it as a ``Path``.

    ``folder``: the output is a folder (otherwise a file). An existing file or a
    folder that holds anything is refused unless ``overwrite``; a file where a
    folder is expected (or the other way round), a parent that is a file, a
    ``suffix`` other than the one expected, and any path touching an input
    (:func:`check_not_input`) are refused always. Errors are ``ValueError``\\ s that
    name the flag, the path and what to do.
    """
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise InputError(f"{flag} {path}: expected a {suffix} file name, got {path.name!r}")
    check_not_input(path, flag, inputs)
    for parent in _resolved(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {path}: {parent} is a file, not a folder")
            break
    if folder:
        if path.exists() and not path.is_dir():
            raise InputError(f"{flag} {path}: exists and is not a folder; expected a folder")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise InputError(
                f"{flag} {path}: the folder is not empty; choose a new folder, or pass "
                "--overwrite to write over what is there"
            )
    else:
        if path.is_dir():
            raise InputError(f"{flag} {path}: is a folder; expected a file name")
        if path.exists() and not overwrite:
            raise InputError(
                f"{flag} {path}: already exists; choose a new name, or pass --overwrite to "
                "replace it"
            )
    return path
