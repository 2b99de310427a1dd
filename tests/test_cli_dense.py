"""The classify and dense commands, on a weight file in the released layout."""

import numpy as np
import pytest
from PIL import Image

from overfeat_scratch import build_network
from overfeat_scratch.cli import main
from overfeat_scratch.nn.dense import dense_evaluate
from overfeat_scratch.nn.weights import preprocess, save_released_weights
from overfeat_scratch.ops.image import load_image


@pytest.fixture(scope="module")
def accurate_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "net_weight_1"
    net = build_network("accurate", seed=5)
    save_released_weights(net, path)
    return path, net.eval()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (245, 260, 3)).astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_dense_command_writes_the_raw_map(accurate_file, image_file, tmp_path, capsys):
    weights, net = accurate_file
    out = tmp_path / "map.npy"
    assert (
        main(
            [
                "dense",
                "--weights",
                str(weights),
                "--model",
                "accurate",
                "--fine",
                str(image_file),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    scores = np.load(out, allow_pickle=False)
    assert scores.shape == (1000, 3, 4) and scores.dtype == np.float32
    expected = dense_evaluate(net, preprocess(load_image(image_file)), fine=True).scores[0]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert "every" not in capsys.readouterr().err


@pytest.mark.slow
def test_classify_command(accurate_file, image_file, tmp_path, capsys):
    weights, _ = accurate_file
    names = tmp_path / "names.txt"
    names.write_text("".join(f"thing {i}\n" for i in range(1000)))
    args = ["classify", "--weights", str(weights), "--model", "accurate", "--top", "3"]
    assert main(args + ["--names", str(names), str(image_file)]) == 0
    out = capsys.readouterr().out
    assert "one centre 221x221 window" in out
    assert out.count("thing ") == 3
    assert main(args + ["--multiscale", "--scales", "245,281x317", str(image_file)]) == 0
    out = capsys.readouterr().out
    assert "2 scale(s), with flips" in out and out.count("class ") == 3


def test_commands_report_bad_input(tmp_path, image_file, capsys):
    short = tmp_path / "short"
    short.write_bytes(b"\0" * 400)
    assert main(["classify", "--weights", str(short), "--model", "fast", str(image_file)]) == 2
    assert "expected 145,920,872 float32 values" in capsys.readouterr().err
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    from overfeat_scratch.cli import parse_scales, read_names

    assert parse_scales("245,281x317") == [245, (281, 317)]
    with pytest.raises(ValueError, match="expected sizes like 245 or 281x317, got 'big'"):
        parse_scales("245,big")

    with pytest.raises(ValueError, match="expected 1000 class names, found 2"):
        read_names(names, 1000)
