"""The optimizer, the schedule, checkpoints and exact resumption."""

import json
import zipfile

import numpy as np
import pytest
from checkpoints import with_metadata
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_scratch import build_network
from overfeat_scratch.nn.train import (
    MINI_CONFIG,
    PAPER_CONFIG,
    TrainConfig,
    config_from_meta,
    load_checkpoint,
    random_crops,
    read_checkpoint,
    resume_state,
    save_checkpoint,
    train,
)
from overfeat_scratch.ops.optim import (
    SGD,
    StepSchedule,
    sgd_step,
    sgd_step_fused,
    sgd_step_naive,
)


@given(st.integers(1, 50), st.floats(0, 1), st.floats(0, 0.99), st.floats(0, 0.1))
def test_sgd_step_matches_loops(size, lr, momentum, weight_decay):
    rng = np.random.default_rng(size)
    w, g, v = (rng.standard_normal(size) for _ in range(3))
    w2, v2 = w.copy(), v.copy()
    sgd_step(w, g, v, lr, momentum, weight_decay)
    sgd_step_naive(w2, g, v2, lr, momentum, weight_decay)
    np.testing.assert_allclose(w, w2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(v, v2, rtol=1e-12, atol=1e-15)


@settings(max_examples=25)
@given(
    st.sampled_from([(7,), (3, 5), (4, 2, 3, 3), (1000,)]),
    st.sampled_from([np.float32, np.float64]),
    st.booleans(),
    st.floats(0, 1),
    st.floats(0, 0.99),
    st.floats(0, 0.1),
)
def test_fused_sgd_step_gives_the_array_versions_bits(shape, dtype, strided, lr, mom, decay):
    hyper = (lr, mom, decay)
    rng = np.random.default_rng(len(shape))
    w, g, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    if strided:  # not contiguous: the fused step hands over to the array version
        w, g, v = (np.asfortranarray(a).T if a.ndim > 1 else a[::-1] for a in (w, g, v))
    w2, v2 = w.copy(), v.copy()
    w_before = w.copy()
    sgd_step_fused(w, g, v, *hyper)
    sgd_step(w2, g, v2, *hyper)
    assert w.tobytes() == w2.tobytes() and v.tobytes() == v2.tobytes()
    assert w.dtype == v.dtype == dtype
    if hyper[0] > 0 and np.any(g != 0):
        assert not np.array_equal(w, w_before)


def test_sgd_rejects_bad_arguments():
    w = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="must have one shape"):
        sgd_step(w, np.zeros(4, np.float32), np.zeros(3, np.float32), 0.1, 0.9, 0)
    with pytest.raises(ValueError, match="0 <= momentum < 1"):
        sgd_step(w, w.copy(), w.copy(), 0.1, 1.5, 0)
    with pytest.raises(ValueError, match="must have one shape"):
        sgd_step_fused(w, np.zeros(4, np.float32), np.zeros(3, np.float32), 0.1, 0.9, 0)
    with pytest.raises(ValueError, match="0 <= momentum < 1"):
        sgd_step_fused(w, w.copy(), w.copy(), 0.1, 1.5, 0)


def test_sgd_velocities_follow_the_parameters_dtype():
    """A float64 network keeps float64 velocities: its updates are not rounded to
    float32 (1e-10 added to 1 would vanish in float32, whose epsilon is 1.2e-7)."""
    net = build_network("mini", seed=0).astype(np.float64)
    optimizer = SGD(net, lr=1.0, momentum=0.0, weight_decay=0.0)
    assert all(v.dtype == np.float64 for v in optimizer.state_dict().values())
    name, layer, key = net.named_parameters()[0]
    layer.params[key][...] = 1.0
    for _, other, other_key in net.named_parameters():
        other.grads[other_key] = np.zeros_like(other.params[other_key])
    layer.grads[key] = np.full_like(layer.params[key], -1e-10)
    optimizer.step()
    np.testing.assert_array_equal(layer.params[key], 1.0 + 1e-10)
    # Loading velocities keeps the parameters' dtype too, and refuses NaN.
    state = {k: v.astype(np.float32) for k, v in optimizer.state_dict().items()}
    optimizer.load_state_dict(state)
    assert optimizer.velocity[name].dtype == np.float64
    state[name][0] = np.nan
    with pytest.raises(ValueError, match=f"sgd: velocity {name}: contains"):
        optimizer.load_state_dict(state)


def test_step_schedule_is_the_papers():
    schedule = PAPER_CONFIG.schedule()
    assert schedule(0) == pytest.approx(0.05)
    assert schedule(29) == pytest.approx(0.05)
    assert schedule(30) == pytest.approx(0.025)
    assert schedule(85) == pytest.approx(0.05 / 32)
    assert StepSchedule(1.0, (2,), 0.1)(5) == pytest.approx(0.1)
    # By default each decay epoch halves the rate, as in the paper.
    assert [StepSchedule(1.0, (2, 4))(e) for e in (1, 2, 4)] == [1.0, 0.5, 0.25]
    assert PAPER_CONFIG.momentum == 0.6 and PAPER_CONFIG.weight_decay == 1e-5
    assert PAPER_CONFIG.batch_size == 128 and PAPER_CONFIG.init_std == 0.01


def test_random_crops_translate_and_flip():
    padded = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 1, 6, 6)
    crops = random_crops(padded, 4, np.random.default_rng(0), flips=False)
    for n in range(2):
        found = [
            (dy, dx)
            for dy in range(3)
            for dx in range(3)
            if np.array_equal(crops[n, 0], padded[n, 0, dy : dy + 4, dx : dx + 4])
        ]
        assert len(found) == 1
    flipped = random_crops(padded, 6, np.random.default_rng(1), flips=True)
    for n in range(2):
        assert np.array_equal(flipped[n], padded[n]) or np.array_equal(
            flipped[n], padded[n, :, :, ::-1]
        )


def silent(*args):
    pass


TINY = TrainConfig(
    epochs=2,
    batch_size=16,
    learning_rate=0.05,
    lr_decay_epochs=(1,),
    lr_decay_factor=0.5,
    momentum=0.9,
    weight_decay=1e-4,
    init_std="he",
    pad=2,
    flips=False,
    seed=3,
)


def tiny_data(n=48):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    images = rng.random((n, 1, 32, 32), dtype=np.float32) * 0.1
    for i, label in enumerate(labels):  # a learnable signal: a bright row per class
        images[i, 0, 3 * label + 1] += 1.0
    return images, labels


def test_resuming_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    data = tiny_data()
    straight = train(build_network("mini", seed=1), TINY, data, progress=False, log=silent)
    first = train(
        build_network("mini", seed=1),
        TrainConfig(**{**TINY.__dict__, "epochs": 1}),
        data,
        out_dir=tmp_path,
        data_checksum="abc",
        progress=False,
        log=silent,
    )
    assert first.checkpoint == tmp_path / "checkpoint.npz"
    net, meta, velocity = load_checkpoint(first.checkpoint, expected_network="mini")
    assert meta["epoch"] == 1 and meta["data_checksum"] == "abc"
    config = config_from_meta(meta, epochs=2)
    resumed = train(
        net, config, data, resume=resume_state(meta, velocity), progress=False, log=silent
    )
    for name, value in straight.net.state_dict().items():
        np.testing.assert_array_equal(resumed.net.state_dict()[name], value, err_msg=name)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    for name in ("log.csv", "log.json", "curves.png"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "log.json").read_text())[0]["epoch"] == 1


def test_training_learns_a_simple_signal():
    data = tiny_data(96)
    config = TrainConfig(**{**TINY.__dict__, "epochs": 6, "lr_decay_epochs": (4,)})
    result = train(
        build_network("mini", seed=0), config, data, test_data=data, progress=False, log=silent
    )
    assert result.history[-1]["test_error"] < result.history[0]["train_error"]
    assert result.history[-1]["test_error"] <= 0.2


def test_checkpoints_are_rejected_clearly(tmp_path):
    net = build_network("mini", seed=0)
    good = save_checkpoint(tmp_path / "good.npz", net, None, {"epoch": 0})
    meta, params, _ = read_checkpoint(good)
    assert meta["network"]["name"] == "mini" and "conv1.w" in params

    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.npz")
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        read_checkpoint(tmp_path / "cut.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no metadata record"):
        read_checkpoint(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="holds the 'mini' network, expected 'fast'"):
        load_checkpoint(good, expected_network="fast")

    # A checkpoint whose parameters do not fit the network.
    with zipfile.ZipFile(good) as z:
        names = z.namelist()
    arrays = dict(np.load(good, allow_pickle=False))
    arrays["param/conv1.w"] = np.zeros((3, 3), np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"conv1\.w has shape \(3, 3\)"):
        load_checkpoint(tmp_path / "bad.npz")
    assert "metadata.npy" in names


def test_checkpoints_load_without_pickle(tmp_path):
    net = build_network("mini", seed=0)
    path = save_checkpoint(tmp_path / "c.npz", net, SGD(net, 0.1, 0.9, 0.0), {"epoch": 0})
    with np.load(path, allow_pickle=False) as data:
        assert all(data[key].dtype != object for key in data.files)


def test_mini_config_documents_its_choices():
    assert MINI_CONFIG.flips is False  # a mirrored digit is not a digit
    assert MINI_CONFIG.init_std == "he"


def drop(key):
    return lambda meta: meta.pop(key)


def put(key, value):
    return lambda meta: meta.__setitem__(key, value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (drop("network"), r"metadata has no 'network' field; expected an object"),
        (put("network", "mini"), r"metadata field 'network' is 'mini'; expected an object"),
        (
            lambda meta: meta["network"].pop("layers"),
            r"metadata has no 'network\.layers' field; expected a list of layer records",
        ),
        (
            lambda meta: meta["network"].__setitem__("name", 7),
            r"metadata field 'network\.name' is 7; expected the network's name, a string",
        ),
        (put("epoch", "3"), r"metadata field 'epoch' is '3'; expected the number of epochs"),
        (put("epoch", -1), r"metadata field 'epoch' is -1; expected >= 0"),
        (put("extra_networks", []), r"metadata field 'extra_networks' is \[\]; expected a JSON"),
        (put("version", 9), r"format 'overfeat-scratch-checkpoint' version 9, expected"),
    ],
)
def test_checkpoint_metadata_errors_name_the_field(tmp_path, edit, message):
    good = save_checkpoint(tmp_path / "good.npz", build_network("mini", seed=0), None, {})
    bad = with_metadata(tmp_path / "bad.npz", good, edit)
    with pytest.raises(ValueError, match=r"checkpoint .*bad\.npz: " + message):
        load_checkpoint(bad)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A checkpoint after one epoch of training on tiny data, as resumption reads it."""
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(**{**TINY.__dict__, "epochs": 1})
    train(build_network("mini", seed=1), config, tiny_data(), out_dir=out, progress=False, log=None)
    return out / "checkpoint.npz"


@pytest.mark.parametrize(
    "edit, message",
    [
        (drop("dropout"), r"metadata has no 'dropout' field; expected \{layer: \[seed, calls\]\}"),
        (drop("config"), r"metadata has no 'config' field; expected the training config"),
        (drop("epoch"), r"metadata has no 'epoch' field"),
        (
            lambda meta: meta["config"].pop("momentum"),
            r"metadata field 'config' lacks \['momentum'\]",
        ),
        (
            lambda meta: meta["config"].__setitem__("batch_size", "16"),
            r"metadata field 'config\.batch_size' is '16'; expected an integer",
        ),
        (
            lambda meta: meta["dropout"].__setitem__("dropout3", [1]),
            r"metadata field 'dropout\.dropout3' is \[1\]; expected \[seed, calls\]",
        ),
        (put("history", [1]), r"metadata field 'history' holds a row that is not an object"),
    ],
)
def test_resuming_checks_the_fields_it_needs(one_epoch, tmp_path, edit, message):
    bad = with_metadata(tmp_path / "bad.npz", one_epoch, edit)
    net, meta, velocity = load_checkpoint(bad)  # loading for inference needs none of them
    with pytest.raises(ValueError, match=r"checkpoint .*bad\.npz: " + message):
        resume_state(meta, velocity, bad)
    with pytest.raises(ValueError, match=r"checkpoint .*bad\.npz: " + message):
        config_from_meta(meta, bad)


def test_a_nan_parameter_is_refused_on_load_and_on_save(one_epoch, tmp_path):
    arrays = dict(np.load(one_epoch, allow_pickle=False))
    arrays["param/full3.w"] = arrays["param/full3.w"].copy()
    arrays["param/full3.w"].flat[7] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(ValueError, match=r"nan\.npz: mini: parameter full3\.w: contains 1 NaN"):
        load_checkpoint(tmp_path / "nan.npz")
    net = build_network("mini", seed=0)
    net["full3"].params["w"].flat[0] = np.inf
    with pytest.raises(ValueError, match=r"param/full3\.w: 1 of .* values are NaN or infinite"):
        save_checkpoint(tmp_path / "inf.npz", net, None, {})
    assert not (tmp_path / "inf.npz").exists()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(one_epoch, tmp_path):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(one_epoch, run / "checkpoint.npz")
    before = (run / "checkpoint.npz").read_bytes()
    net, meta, velocity = load_checkpoint(run / "checkpoint.npz")
    # A learning rate this large overflows float32 within the second epoch's batches.
    config = config_from_meta(meta, epochs=2, learning_rate=1e30, lr_decay_epochs=())
    with pytest.raises(ValueError, match=r"the loss is (nan|inf) at epoch 2, batch \d+; .*left as"):
        train(
            net,
            config,
            tiny_data(),
            out_dir=run,
            resume=resume_state(meta, velocity),
            progress=False,
            log=None,
        )
    assert (run / "checkpoint.npz").read_bytes() == before


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_evaluate_refuses_scores_that_overflow():
    from overfeat_scratch.nn.train import evaluate

    net = build_network("mini", seed=0)
    net["full5"].params["b"][:] = 3e38
    net["full5"].params["w"][:] = 3e38
    images, labels = tiny_data(8)
    with pytest.raises(ValueError, match=r"mini: the scores of examples 0\.\.: \d+ of 80 values"):
        evaluate(net, images + 1.0, labels)


def test_every_objective_implements_the_protocol():
    """The training loop's interface is declared once (:class:`Objective`); each
    objective has its members with the same parameters."""
    import inspect

    from overfeat_scratch.detect.detection import MinedDetection
    from overfeat_scratch.detect.localize import BoxRegression
    from overfeat_scratch.nn.train import CLASSIFICATION, Objective

    members = ("example_size", "start_epoch", "loss", "error")
    for objective in (CLASSIFICATION, BoxRegression(class_specific=True), MinedDetection()):
        assert isinstance(objective, Objective)
        assert isinstance(objective.name, str) and objective.name
        for member in members:
            want = list(inspect.signature(getattr(Objective, member)).parameters)[1:]
            got = list(inspect.signature(getattr(objective, member)).parameters)
            assert got == want, (type(objective).__name__, member, got, want)


def test_an_object_without_the_protocol_is_not_an_objective():
    from overfeat_scratch.nn.train import CLASSIFICATION, Objective

    class NoError:
        name = "broken"
        example_size = CLASSIFICATION.example_size
        start_epoch = CLASSIFICATION.start_epoch
        loss = CLASSIFICATION.loss

    assert not isinstance(NoError(), Objective)
