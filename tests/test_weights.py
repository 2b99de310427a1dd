"""The released-weights loader, on files written in the released layout."""

import numpy as np
import pytest

from overfeat_scratch import build_network
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.weights import load_released_weights, preprocess, save_released_weights


def labelled_state(net):
    """Every tensor holds its own layer number and position, so misplacement shows."""
    state = {}
    for index, (name, layer, key) in enumerate(net.named_parameters()):
        shape = layer.params[key].shape
        pattern = np.float32(index) + np.arange(997, dtype=np.float32) / np.float32(997)
        state[name] = np.resize(pattern, shape)
    return state


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fast", "accurate"])
def test_each_tensor_lands_in_its_layer(tmp_path, model):
    net = build_network(model, seed=None)
    state = labelled_state(net)
    net.load_state_dict(state)
    path = save_released_weights(net, tmp_path / "weights")
    assert path.stat().st_size == 4 * paper.PARAMETERS[model]
    raw = np.fromfile(path, dtype="<f4")
    # Layout: for each layer, weights (out, in, kh, kw) then bias; the fast file's
    # last bias starts at float 145,919,872.
    if model == "fast":
        np.testing.assert_array_equal(raw[145_919_872:], state["full8.b"])
    np.testing.assert_array_equal(raw[: state["conv1.w"].size], state["conv1.w"].reshape(-1))
    loaded = load_released_weights(path, model)
    for name, value in loaded.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    del raw


def test_truncated_or_wrong_file_is_a_clear_error(tmp_path):
    short = tmp_path / "short"
    np.zeros(1000, "<f4").tofile(short)
    with pytest.raises(ValueError, match=r"expected 145,920,872 float32 values .* found 1,000\.00"):
        load_released_weights(short, "fast")
    odd = tmp_path / "odd"
    odd.write_bytes(b"\0" * 4001)
    with pytest.raises(ValueError, match=r"found 1,000\.25 floats \(4,001 bytes\)"):
        load_released_weights(odd, "accurate")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_released_weights(tmp_path / "missing", "fast")
    with pytest.raises(ValueError, match="unknown model 'huge'"):
        load_released_weights(short, "huge")


def test_preprocess_uses_the_released_mean_and_std():
    image = np.full((4, 5, 3), 255, np.uint8)
    image[0, 0] = (0, 118, 200)
    x = preprocess(image)
    assert x.shape == (1, 3, 4, 5) and x.dtype == np.float32
    expected = (np.array([0, 118, 200]) - paper.PIXEL_MEAN) / paper.PIXEL_STD
    np.testing.assert_allclose(x[0, :, 0, 0], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) RGB image, got shape \(4, 5\)"):
        preprocess(np.zeros((4, 5)))
