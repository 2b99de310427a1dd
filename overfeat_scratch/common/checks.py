"""Input checks that speak to the person.

Every public function of the package validates its arguments with these helpers,
so a wrong shape or dtype is reported as what was expected and what arrived,
not as a crash deep inside NumPy or a kernel launch.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


class InputError(ValueError):
    """Bad input: an argument, an array or a file that is not what was expected.

    Every check of the package raises it (or a subclass), with a message naming what
    was wrong and what was expected. It is a ``ValueError``, so code that catches
    ``ValueError`` keeps working; the command line catches exactly this (and
    ``OSError``) and shows any other exception, a bug, with its traceback.
    """


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong type (a string where a number belongs, a dtype that is
    not a float): a ``TypeError`` as well."""


class NotAvailableError(InputError, RuntimeError):
    """Something asked for that this machine cannot give (the CUDA backend without a GPU
    or the simulator): a ``RuntimeError`` as well."""


class NonFiniteError(InputError):
    """A NaN or an infinity where a result (a score, a loss, a parameter) must be finite."""


def check_finite(values, what: str) -> None:
    """Raise :class:`NonFiniteError` unless every number in ``values`` is finite.

    For results about to be reported or saved: ``what`` names them (``"class
    probabilities"``), and the message says how many values are not finite.
    """
    values = np.asarray(values, dtype=np.float64)
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise NonFiniteError(
            f"{what}: {bad} of {values.size} values are NaN or infinite; refusing to report "
            "them (the weights or the input overflow float32)"
        )


def describe(x) -> str:
    """A short description of an array-like for error messages."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None:
        return f"a {type(x).__name__}"
    return f"shape {tuple(shape)} and dtype {dtype}"


def check_float_array(x, name: str, ndim: int | None = None, finite: bool = False):
    """Check that ``x`` is a float32/float64 array (NumPy or device) of rank ``ndim``.

    Raises ``TypeError`` for non-arrays and non-float dtypes, ``ValueError`` for a
    wrong rank or (when ``finite``) NaN or infinite values. Returns ``x``.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise InputTypeError(f"{name}: expected an array, got {describe(x)}")
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise InputTypeError(
            f"{name}: expected a float32 or float64 array, got dtype {x.dtype}; "
            "convert it first, e.g. x.astype(np.float32)"
        )
    if ndim is not None and len(x.shape) != ndim:
        layout = {1: "(N,)", 2: "(N, D)", 4: "(N, C, H, W)"}.get(ndim, f"rank {ndim}")
        raise InputError(f"{name}: expected a {layout} array, got shape {tuple(x.shape)}")
    if finite and isinstance(x, np.ndarray) and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise NonFiniteError(
            f"{name}: contains {bad} NaN or infinite value(s); expected finite values"
        )
    return x


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an integer at least ``minimum`` and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_std(value, name: str) -> float:
    """Check that a standard deviation is a finite number >= 0 and return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name}: expected a number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise InputError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def check_same_dtype(name: str, *arrays):
    """Check that all arrays share one dtype (mixing float32 and float64 is a bug)."""
    dtypes = {np.dtype(a.dtype) for a in arrays}
    if len(dtypes) > 1:
        raise InputTypeError(f"{name}: arrays mix dtypes {sorted(str(d) for d in dtypes)}; use one")


def conv_output_size(size: int, kernel: int, stride: int, pad: int, what: str) -> int:
    """Output side of a valid convolution or pool, with a clear error when too small."""
    padded = size + 2 * pad
    if padded < kernel:
        extra = f" (+{2 * pad} padding)" if pad else ""
        raise InputError(
            f"{what}: input side {size}{extra} is smaller than the kernel {kernel}; "
            f"expected at least {kernel - 2 * pad}"
        )
    return (padded - kernel) // stride + 1
