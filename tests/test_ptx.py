"""Every CUDA kernel compiled by NVIDIA's compiler for sm_80 (A100) and sm_90 (H100).

:func:`overfeat_scratch.ptx.run_check` records every kernel launch on the
simulator (in a subprocess, with a GPU's launch sizes), compiles each kernel to PTX
with NVVM and assembles it with ``ptxas -v`` (in one subprocess per target, without
the simulator), once for the module: about a minute. That needs the ``cuda`` extra's
toolchain; without it those tests skip and say why, except where
``OVERFEAT_REQUIRE_PTX=1`` (``make test`` sets it), where they fail. The occupancy
arithmetic, the ptxas parser and the limit checks are tested without it.
"""

from __future__ import annotations

import os

import pytest

from overfeat_scratch import ptx

TARGETS = ("sm_80", "sm_90")


@pytest.fixture(scope="module")
def report():
    ptxas, why = ptx.toolchain()
    if ptxas is None:
        if os.environ.get("OVERFEAT_REQUIRE_PTX") == "1":
            pytest.fail(f"OVERFEAT_REQUIRE_PTX=1 but the PTX check cannot run: {why}")
        pytest.skip(f"no CUDA compiler toolchain to compile the kernels with: {why}")
    return ptx.run_check(TARGETS)


def rows(report):
    for target in TARGETS:
        for row in report["targets"][target]:
            yield target, row


# --------------------------------------------------------------------------------------
# The compile check (needs NVVM and ptxas)


@pytest.mark.cuda
def test_every_kernel_compiles_for_both_targets(report):
    assert set(report["targets"]) == set(TARGETS)
    errors = [f"{t} {r['label']}: {r['error']}" for t, r in rows(report) if "error" in r]
    assert not errors, "\n".join(errors)
    labels = {t: sorted(r["label"] for r in report["targets"][t]) for t in TARGETS}
    assert labels["sm_80"] == labels["sm_90"]
    assert len(labels["sm_80"]) >= 30


@pytest.mark.cuda
def test_every_kernel_of_the_package_is_launched_and_compiled(report):
    assert "conv.conv_forward_tiled" in report["kernels"]
    assert "merge.row_best_kernel" in report["kernels"]
    assert ptx.missing_kernels(report) == []


@pytest.mark.cuda
def test_the_layers_of_every_network_select_compiled_configurations(report):
    uses = [u for _, r in rows(report) for u in r["uses"] if u.endswith((" fwd", " bwd"))]
    for model in ("fast", "accurate", "mini"):
        for scenario in ("train", "window", "dense"):
            assert any(u.startswith(f"{model} {scenario} ") for u in uses), (model, scenario)
    selected = {r["label"] for _, r in rows(report) if any(u.endswith(" fwd") for u in r["uses"])}
    # Wide outputs take the 4x4 register block; a fully connected layer at batch 1 has
    # one column and takes rb = 1.
    assert "conv.conv_forward_tiled[tile=16,rb=4]" in selected
    assert "conv.conv_forward_tiled[tile=16,rb=1]" in selected


@pytest.mark.cuda
def test_no_launch_asks_for_more_than_1024_threads_per_block(report):
    for target, row in rows(report):
        assert 1 <= row["threads"] <= 1024, (target, row["label"], row["blocks"])
    assert not [p for p in ptx.problems(report) if "threads per block" in p]


@pytest.mark.cuda
def test_static_shared_memory_fits_in_48_kb(report):
    for target, row in rows(report):
        assert row["static_smem"] <= 48 * 1024, (target, row["label"], row["static_smem"])


@pytest.mark.cuda
def test_conv_and_pooling_kernels_do_not_spill(report):
    checked = [(t, r) for t, r in rows(report) if r["module"] in ("conv", "pool", "offset_pool")]
    assert len(checked) >= 2 * 18
    spills = [
        f"{t} {r['label']}: {r['spill_stores']} B stored, {r['spill_loads']} B loaded"
        for t, r in checked
        if r["spill_stores"] or r["spill_loads"]
    ]
    assert not spills, "\n".join(spills)


@pytest.mark.cuda
def test_gemm_kernels_keep_a_quarter_of_the_sm_busy(report):
    # The launch bounds hold the 4x4 register blocks to 128 registers (2 blocks of
    # 256 threads per SM) and the 1x1 ones to 64 (4 blocks).
    for target, row in rows(report):
        if "_tiled[" in row["label"]:
            assert row["occupancy"] >= (0.25 if "rb=4" in row["label"] else 0.5), (target, row)
    assert ptx.problems(report) == []


# --------------------------------------------------------------------------------------
# Without the toolchain: the arithmetic and the parsing


@pytest.mark.parametrize(
    ("target", "threads", "regs", "smem", "blocks", "limited_by"),
    [
        # 128 registers: 4 warps per sub-partition, 16 warps, 2 blocks of 8 warps.
        ("sm_80", 256, 128, 8192, 2, ["registers"]),
        ("sm_90", 256, 120, 8192, 2, ["registers"]),
        # 130 registers round up to 4352 per warp: 3 warps per sub-partition, 1 block.
        ("sm_90", 256, 130, 8192, 1, ["registers"]),
        ("sm_80", 256, 64, 2048, 4, ["registers"]),
        ("sm_80", 256, 32, 0, 8, ["warps", "registers"]),
        ("sm_80", 64, 48, 2560, 20, ["registers"]),
        ("sm_80", 1, 36, 0, 32, ["blocks"]),
        # 64 registers for 32 warps fill the register file: 1 block, half the warps.
        ("sm_80", 1024, 64, 0, 1, ["registers"]),
        # 48 KB of static shared memory plus the 1 KB reserve: 3 blocks on 164 KB,
        # 4 on 228 KB.
        ("sm_80", 128, 16, 48 * 1024, 3, ["shared"]),
        ("sm_90", 128, 16, 48 * 1024, 4, ["shared"]),
        # Beyond the limits: nothing runs.
        ("sm_80", 1056, 16, 0, 0, ["warps"]),
        ("sm_80", 256, 16, 48 * 1024 + 4, 0, ["shared"]),
    ],
)
def test_occupancy_follows_the_cuda_occupancy_calculator(
    target, threads, regs, smem, blocks, limited_by
):
    got = ptx.occupancy(threads, regs, smem, 0, target)
    assert got["blocks"] == blocks
    assert got["limited_by"] == limited_by
    assert got["occupancy"] == pytest.approx(blocks * -(-threads // 32) / 64)


def test_the_targets_share_one_table_of_limits():
    assert set(ptx.TARGETS) == {"sm_80", "sm_90"}
    for name, limits in ptx.TARGETS.items():
        assert name == f"sm_{limits['cc'][0]}{limits['cc'][1]}"
        assert limits["max_threads_per_block"] == 1024
        assert limits["smem_per_block"] == 48 * 1024
        assert limits["smem_per_sm"] // 1024 in limits["smem_carveouts_kb"]
    assert "Occupancy Calculator" in ptx.LIMITS_SOURCE


PTXAS_OUTPUT = """\
ptxas info    : 40 bytes gmem
ptxas info    : Function properties for helper
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90'
ptxas info    : Function properties for _Z6kernelPf
    24 bytes stack frame, 12 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 80 registers, used 1 barriers, 8192 bytes smem, 872 bytes cmem[0]
ptxas info    : Compile time = 203.106 ms
"""


def test_ptxas_output_is_parsed():
    got = ptx.parse_ptxas(PTXAS_OUTPUT)
    assert got == {
        "entry": "_Z6kernelPf",
        "registers": 80,
        "static_smem": 8192,
        "barriers": 1,
        "stack_frame": 24,
        "spill_stores": 20,
        "spill_loads": 16,
    }
    no_smem = "ptxas info    : Used 10 registers, 380 bytes cmem[0]\n"
    assert ptx.parse_ptxas(no_smem)["static_smem"] == 0
    with pytest.raises(ValueError, match="registers"):
        ptx.parse_ptxas("ptxas info    : 0 bytes gmem\n")


def row(label, module, **values):
    base = dict(label=label, signature="", threads=256, static_smem=0, spill_stores=0)
    base.update(spill_loads=0, launch_bounds=None, no_spill=module in ptx.NO_SPILL_MODULES)
    base.update(values)
    return base


def test_problems_names_each_broken_limit():
    clean = row("conv.ok", "conv", threads=1024, static_smem=48 * 1024)
    broken = [
        row("conv.a", "conv", spill_stores=4),
        row("pool.b", "pool", threads=1056),
        row("losses.c", "losses", static_smem=48 * 1024 + 1),
        row("merge.d", "merge", error="TypingError: no"),
        row("conv.e", "conv", threads=512, launch_bounds=(256, 2)),
        row("losses.f", "losses", spill_loads=8),  # allowed outside conv and pooling
    ]
    report = {"targets": {"sm_90": [clean, *broken]}}
    found = ptx.problems(report)
    assert len(found) == 5
    labels = ("conv.a", "pool.b", "losses.c", "merge.d", "conv.e")
    for text, label in zip(found, labels, strict=True):
        assert label in text
    assert "spills" in found[0] and "1056 threads" in found[1] and "does not compile" in found[3]


@pytest.mark.cuda
def test_kernel_identity_names_the_factory_and_its_arguments():
    from overfeat_scratch.cuda import conv

    kernel = conv.make_conv_forward_kernel(16, 4)
    fn = getattr(kernel, "py_func", None) or kernel.fn
    identity = ptx.kernel_identity(fn)
    assert identity["factory"] == "make_conv_forward_kernel"
    assert identity["params"] == {"tile": 16, "rb": 4}
    assert ptx.kernel_label(identity) == "conv.conv_forward_tiled[tile=16,rb=4]"
    assert ptx.resolve_kernel(identity) is kernel

    split = conv.make_split_sum_kernel(conv.store_dx)
    identity = ptx.kernel_identity(getattr(split, "py_func", None) or split.fn)
    assert identity["params"] == {"store": {"function": "overfeat_scratch.cuda.conv:store_dx"}}
    assert ptx.resolve_kernel(identity) is split


def test_kernel_argument_types_round_trip_through_json():
    import json

    from numba.core import types

    cases = [
        types.Array(types.float32, 4, "C"),
        types.Array(types.uint8, 1, "C", readonly=True),
        types.Array(types.int64, 2, "F"),
        types.UniTuple(types.int64, 11),
        types.boolean,
        types.uint64,
        types.float64,
    ]
    for numba_type in cases:
        record = json.loads(json.dumps(ptx.type_record(numba_type)))
        assert ptx.type_from_record(record) == numba_type
    with pytest.raises(TypeError, match="no JSON form"):
        ptx.type_record(types.unicode_type)
    with pytest.raises(ValueError, match="unknown scalar"):
        ptx.type_from_record({"scalar": "object"})


RESOURCES = ("threads", "registers", "static_smem", "spill_stores", "spill_loads", "blocks")


@pytest.mark.cuda
def test_the_committed_table_is_what_the_compiler_says(report):
    committed = ptx.committed_table()
    for target in TARGETS:
        live = {r["label"]: {k: r.get(k) for k in RESOURCES} for r in report["targets"][target]}
        saved = {r["label"]: {k: r.get(k) for k in RESOURCES} for r in committed["targets"][target]}
        stale = sorted(
            label for label in live.keys() | saved.keys() if live.get(label) != saved.get(label)
        )
        assert not stale, (
            f"{target}: benchmarks/results/ptx_check.json is stale for {stale}; "
            "regenerate it with `python benchmarks/ptx_check.py` and the docs table with --markdown"
        )


def test_the_performance_page_shows_the_committed_table():
    page = (ptx.ROOT / "docs" / "performance.md").read_text()
    assert ptx.markdown_table(ptx.committed_table()) in page
