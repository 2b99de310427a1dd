"""Checkpoint files edited the way a careless or hostile user might edit them."""

import json

import numpy as np


def with_metadata(path, source, edit):
    """A copy of checkpoint ``source`` at ``path`` with its metadata record changed by
    ``edit`` (a function that changes the dict in place)."""
    arrays = dict(np.load(source, allow_pickle=False))
    meta = json.loads(arrays["metadata"].tobytes().decode())
    edit(meta)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    return path
