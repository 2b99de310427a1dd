"""Offset pooling and dense evaluation on the CUDA backend (simulator) against NumPy."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import dense_networks

from overfeat_scratch.nn.dense import dense_evaluate
from overfeat_scratch.ops import offset_pool

cuda = pytest.importorskip("numba.cuda")
pytestmark = pytest.mark.cuda
if not cuda.is_available():
    pytest.skip("no CUDA device and the simulator is off", allow_module_level=True)

from overfeat_scratch.cuda import offset_pool as cuda_offset_pool  # noqa: E402


@settings(max_examples=12)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1), st.data())
def test_offset_pool_and_interleave_match_numpy(kernel, stride, seed, data):
    h = data.draw(st.integers(kernel, 9))
    w = data.draw(st.integers(kernel, 9))
    x = np.random.default_rng(seed).standard_normal((2, 2, h, w)).astype(np.float32)
    expected = offset_pool.offset_max_pool2d(x, kernel, stride)
    poisoned = cuda.to_device(np.full(expected.shape, np.nan, np.float32))
    got = cuda_offset_pool.offset_max_pool2d(cuda.to_device(x), kernel, stride, out=poisoned)
    np.testing.assert_array_equal(got.copy_to_host(), expected)  # every element written

    y = np.random.default_rng(seed + 1).standard_normal((stride, stride, 2, 3, 2, 3))
    y = y.astype(np.float32)
    fh = data.draw(st.integers(1, 2 * stride))
    fw = data.draw(st.integers(1, 3 * stride))
    fine = cuda_offset_pool.interleave_offsets(cuda.to_device(y), fh, fw).copy_to_host()
    np.testing.assert_array_equal(fine, offset_pool.interleave_offsets(y, fh, fw))


@settings(max_examples=4)
@given(dense_networks(max_channels=2), st.booleans(), st.data())
def test_dense_evaluation_on_cuda_matches_numpy(spec, fine, data):
    channels, net64 = spec
    net = copy.deepcopy(net64).astype(np.float32)
    window = net.window()
    h = data.draw(st.integers(window, window + 6))
    w = data.draw(st.integers(window, window + 6))
    x = np.random.default_rng(0).standard_normal((1, channels, h, w)).astype(np.float32)
    expected = dense_evaluate(net, x, fine=fine)
    got = dense_evaluate(net.to("cuda"), x, fine=fine)
    assert got.stride == expected.stride
    scale = max(1.0, float(np.abs(expected.scores).max()))
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5, atol=1e-5 * scale)


def test_interleave_rejects_bad_sizes():
    y = cuda.to_device(np.zeros((2, 2, 1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="needs between 1 and 4x4 positions"):
        cuda_offset_pool.interleave_offsets(y, 5, 2)
