"""The SGD update (``--skip-sgd``), against NumPy and PyTorch.

``cuda.optim.sgd_step`` on a parameter the size of the fast model's largest
(``full6.w``, 113M floats) with the paper's settings, against NumPy's ``optim.sgd_step``
in float64 (parameter and velocity; the update writes every element, so one it skips is
caught); timed against one step of
``torch.optim.SGD(momentum, weight_decay, foreach=True)`` (and ``fused=True``) on a
tensor of the same size. PyTorch applies the learning rate after the momentum
(``v = m*v + g'``, ``w -= lr*v``; ours ``v = m*v - lr*g'``, ``w += v``): the same
memory traffic, so only the timing is compared.

The record is a kernel record, in the table of :mod:`.offset` against PyTorch.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numba import cuda

from overfeat_scratch.cuda import optim as cuda_optim
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.networks import build_network
from overfeat_scratch.ops import optim

from .common import against_torch, describe, f64, measure, record, relative_error, sync, time_torch

TINY_SGD_SHAPE = (5, 3, 5, 7)  # 525 elements: not a multiple of the block size


def sgd_shape(args):
    """``(shape, name)`` of the fast model's largest parameter (``full6.w``), or a tiny one."""
    if args.tiny:
        return TINY_SGD_SHAPE, "tiny/param"
    net = build_network("fast", seed=None)  # zero weights: no time spent drawing them
    name, layer, key = max(net.named_parameters(), key=lambda item: item[1].params[item[2]].size)
    return tuple(layer.params[key].shape), f"fast/{name}"


def check_sgd(args, rng, torch):
    """One update of a large parameter against NumPy in float64, then timings."""
    shape, name = sgd_shape(args)
    lr, momentum, decay = (paper.TRAINING[k] for k in ("learning_rate", "momentum", "weight_decay"))
    case = dict(op="sgd", name=name, model=name.split("/")[0], batch=1)
    # A later step: the velocity is not zero. Scales as in training.
    w = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
    g = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
    v = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.001)
    w_ref, v_ref = f64(w, v)
    optim.sgd_step(w_ref, g.astype(np.float64), v_ref, lr, momentum, decay)
    wd, gd, vd = (cuda.to_device(a) for a in (w, g, v))
    del w, g, v
    run = partial(cuda_optim.sgd_step, wd, gd, vd, lr, momentum, decay)
    run()  # the checked update (in place: the timed runs below change the values)
    sync()
    error = max(relative_error(wd, w_ref), relative_error(vd, v_ref))
    del w_ref, v_ref
    _, ms, times = measure(run, args.repeats)
    rec = record(case, "step", "-", error, 0, False, ms, times)
    size = int(np.prod(shape))
    # Five accesses of 4 bytes per element: read w, g, v; write v, w.
    rec.update(shape=list(shape), elements=size, gb_per_s=20 * size / ms / 1e6)
    if torch is not None:
        p = torch.empty(shape, device="cuda").normal_(0.0, 0.01).requires_grad_()
        p.grad = torch.empty_like(p).normal_(0.0, 0.01)
        for label in ("foreach", "fused"):
            try:
                opt = torch.optim.SGD(
                    [p], lr=lr, momentum=momentum, weight_decay=decay, **{label: True}
                )
                rec[f"torch_{label}_ms"] = time_torch(torch, opt.step, args.repeats)
            except (RuntimeError, TypeError, ValueError) as error:  # fused: newer PyTorch
                rec[f"torch_{label}_error"] = describe(error)
        if "torch_foreach_ms" in rec:
            against_torch(rec, rec["torch_foreach_ms"])
        del p, opt
        torch.cuda.empty_cache()
    return [rec]


def run(args, rng, torch, results, save):
    """One record into ``results["kernels"]``."""
    print("sgd update", flush=True)
    results["kernels"] += check_sgd(args, rng, torch)
