"""The run-time estimate, printed first (the JSON keeps it beside the measured seconds)."""

from __future__ import annotations

from overfeat_scratch.nn import paper
from overfeat_scratch.nn.dense import fine_multiply_adds
from overfeat_scratch.nn.networks import build_network

from .common import SIZES
from .layers import configs

# Assumed rates, rough guesses for a data-centre GPU and a 16-core host; compare
# ``estimate_s`` with ``section_seconds`` in the JSON after a run to correct them.
ESTIMATE = dict(
    compile_per_config_s=12.0,  # the tiled GEMM kernels of one (tile, register block)
    compile_base_s=30.0,  # every other kernel, CUDA context, PyTorch and cuDNN start-up
    cpu_f64_gflops=150.0,  # NumPy float64 references (im2col + BLAS)
    cpu_f32_gflops=300.0,  # NumPy float32 (the dense check)
    gpu_gflops=2000.0,  # our kernels, averaged over the tile configs (slow ones included)
    network_s=4.0,  # drawing one network's 145M weights and copying them over
)


def estimate_seconds(args):
    """Rough seconds per section for ``args`` on a GPU, from :data:`ESTIMATE`."""
    rate = ESTIMATE
    madds = {m: build_network(m, seed=None).multiply_adds((3, SIZES[m], SIZES[m])) for m in SIZES}
    models = args.models
    gpu = rate["gpu_gflops"] * 1e9
    torch_runs = 2 * (3 + args.repeats)  # fp32 and tf32, each with 3 warm-ups
    est = {}
    if not args.skip_kernels:
        seconds = rate["compile_base_s"] + rate["compile_per_config_s"] * len(configs(args))
        runs = len(configs(args)) * (args.repeats + 1) + 2 * (min(args.repeats, 2) + 1)
        for model in models:
            for batch in args.batches:
                flops = 6 * madds[model] * batch  # forward 2, backward 4 per multiply-add
                seconds += flops / (rate["cpu_f64_gflops"] * 1e9) + runs * flops / gpu
        est["kernels"] = seconds
    if not args.skip_offset:
        est["offset"] = 2.0 * len(models)
    if not args.skip_sgd:
        est["sgd"] = 15.0  # 3 x 113M floats drawn, a float64 reference, comparisons
    if not args.skip_forward:
        flops = sum(2 * madds[m] * b for m in models for b in args.batches)
        runs = args.repeats + 1 + torch_runs
        est["forward"] = rate["network_s"] * len(models) + runs * flops / gpu
    if not args.skip_dense:
        seconds = 0.0
        for model in models:
            net = build_network(model, seed=None)
            flops = [2 * sum(fine_multiply_adds(net, *size)) for size in paper.SCALES]
            seconds += 2 * rate["network_s"]  # drawn once, copied for the NumPy check
            seconds += (flops[0] + flops[-1]) / (rate["cpu_f32_gflops"] * 1e9)
            seconds += (args.repeats + 1 + torch_runs) * sum(flops) / gpu
        est["dense"] = seconds
    if not args.skip_train:
        est["train"] = 10.0
    if not args.skip_merge:  # compiling, then about a second per 10,000-box merge
        est["merge"] = 5.0 + 5.0 * len(args.merge_threads)
    if not args.skip_nms:  # the NumPy mask of 10,000 boxes, torchvision's import
        est["nms"] = 6.0 + 0.5 * len(args.nms_blocks)
    return est


def estimate_text(est):
    total = sum(est.values())
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in est.items())
    return (
        f"estimated run time: about {total:.0f} s ({total / 60:.1f} min): {parts}. Rough: "
        "assumed rates in ESTIMATE (compilation dominates the kernel section); "
        "--quick runs one tile config at batch 1."
    )
