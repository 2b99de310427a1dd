"""Writing files atomically: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# The files shipped inside the package: trained checkpoints and their records.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data"


def shipped_file(path: Path, what: str, command: str) -> Path:
    """``path`` (a file of :data:`SHIPPED_DIR`) if it is there; otherwise a
    ``FileNotFoundError`` saying that ``what`` is missing and that ``command`` makes it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped {what} are missing ({path}); train them with `{command}` and "
            "pass --checkpoint"
        )
    return path


def atomic_write(path, write) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it.

    The rename is atomic on POSIX and Windows, so an interrupted write leaves no
    truncated file behind. Returns ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); give it the permissions a plain
    # open() would have: 0666 less the process's umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
