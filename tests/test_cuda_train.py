"""Training on the CUDA backend (simulator) against the NumPy backend.

One momentum SGD update through :meth:`CudaBackend.sgd_step`, two training steps of a
tiny network with dropout on, and one epoch of :func:`overfeat_scratch.nn.train.train`:
the CUDA backend must end with the parameters the NumPy backend ends with, both in
float32 (the gradients are summed in another order, hence the tolerances).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from overfeat_scratch.nn.backend import get_backend
from overfeat_scratch.nn.layers import Conv2d, Dropout, FullyConnected, MaxPool2d, ReLU, Sequential
from overfeat_scratch.nn.train import TrainConfig, train
from overfeat_scratch.ops import optim
from overfeat_scratch.ops.optim import SGD

cuda = pytest.importorskip("numba.cuda")
pytestmark = pytest.mark.cuda
if not cuda.is_available():
    pytest.skip("no CUDA device and the simulator is off", allow_module_level=True)

from overfeat_scratch.nn.cuda_backend import CudaBackend  # noqa: E402

# Parameters after training steps: float32 on both backends.
RTOL, ATOL = 1e-4, 1e-6


def tiny_network(seed: int = 0) -> Sequential:
    """6x6 grey windows -> 4 classes: conv 3x3, ReLU, pool 2, full (2x2 map), dropout, full.

    Small on purpose: the simulator runs one Python thread per CUDA thread.
    """
    rng = np.random.default_rng(seed)
    return Sequential(
        [
            Conv2d(1, 2, 3, init_std=0.5, rng=rng, name="conv1"),
            ReLU(inplace=True, name="relu1"),
            MaxPool2d(2, name="pool1"),
            FullyConnected(2, 3, map_size=2, init_std=0.5, rng=rng, name="full2"),
            ReLU(inplace=True, name="relu2"),
            Dropout(0.5, seed=11, name="dropout2"),
            FullyConnected(3, 4, map_size=1, init_std=0.5, rng=rng, name="full3"),
        ],
        name="tiny",
    )


def assert_same_parameters(got: Sequential, want: Sequential):
    got_state, want_state = got.state_dict(), want.state_dict()
    assert set(got_state) == set(want_state)
    for name, value in want_state.items():
        np.testing.assert_allclose(got_state[name], value, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (2, 1, 3, 3)])
def test_sgd_step_matches_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    w, g, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    args = (0.05, 0.9, 5e-4)
    backend = CudaBackend()
    wd, gd, vd = (cuda.to_device(a) for a in (w, g, v))
    backend.sgd_step(wd, gd, vd, *args)
    optim.sgd_step(w, g, v, *args)
    np.testing.assert_allclose(wd.copy_to_host(), w, rtol=1e-6)
    np.testing.assert_allclose(vd.copy_to_host(), v, rtol=1e-6)
    np.testing.assert_array_equal(gd.copy_to_host(), g)  # the gradient is only read


def test_sgd_step_refuses_host_parameters():
    # An uploaded copy would be updated and thrown away: the update must not vanish.
    backend = CudaBackend()
    w = np.ones(4, np.float32)
    g, v = cuda.to_device(np.ones(4, np.float32)), cuda.to_device(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="needs a device array"):
        backend.sgd_step(w, g, v, 0.1, 0.9, 0.0)
    with pytest.raises(TypeError, match="needs a device array"):
        backend.sgd_step(cuda.to_device(w), g, np.zeros(4, np.float32), 0.1, 0.9, 0.0)
    with pytest.raises(ValueError, match="must have one shape"):
        backend.sgd_step(cuda.to_device(w), g, cuda.to_device(np.zeros(3, np.float32)), 0.1, 0, 0)


def test_two_sgd_steps_with_dropout_match_numpy():
    rng = np.random.default_rng(5)
    reference = tiny_network().train()
    net = copy.deepcopy(reference).to("cuda").train()
    settings = dict(lr=0.1, momentum=0.9, weight_decay=1e-3)
    optimizers = [SGD(reference, **settings), SGD(net, **settings)]
    for _ in range(2):
        x = rng.standard_normal((2, 1, 6, 6), dtype=np.float32)
        labels = rng.integers(0, 4, (2, 1, 1))
        losses = []
        for model, optimizer in zip((reference, net), optimizers, strict=True):
            scores = model.forward(x)
            loss, grad = model.backend.softmax_cross_entropy(scores, labels)
            model.backward(grad, input_grad=False)
            optimizer.step()
            losses.append(loss)
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
        # Dropout drew the same mask on both backends.
        np.testing.assert_array_equal(
            net["dropout2"].keep.copy_to_host(), reference["dropout2"].keep
        )
    backend = get_backend("cuda")
    for _, layer, key in net.named_parameters():
        assert backend.is_array(layer.params[key])
    assert_same_parameters(net, reference)
    for name, velocity in optimizers[1].state_dict().items():
        want = optimizers[0].velocity[name]
        np.testing.assert_allclose(velocity, want, rtol=RTOL, atol=ATOL, err_msg=name)


def test_train_runs_one_epoch_on_cuda_like_numpy():
    rng = np.random.default_rng(8)
    images = rng.standard_normal((3, 1, 6, 6), dtype=np.float32)
    labels = rng.integers(0, 4, 3)
    config = TrainConfig(
        epochs=1,
        batch_size=2,  # two steps: 2 examples, then the last one
        learning_rate=0.1,
        lr_decay_epochs=(),
        lr_decay_factor=0.5,
        momentum=0.9,
        weight_decay=1e-3,
        init_std=0.5,
        pad=1,
        flips=True,
    )
    reference = tiny_network()
    start = {name: value.copy() for name, value in reference.state_dict().items()}
    net = copy.deepcopy(reference).to("cuda")
    quiet = dict(progress=False, log=lambda line: None)  # no out_dir: nothing written

    result = train(net, config, (images, labels), **quiet)
    want = train(reference, config, (images, labels), **quiet)

    assert result.net is net and result.checkpoint is None
    assert len(result.history) == 1 and result.history[0]["epoch"] == 1
    assert result.history[0]["train_loss"] == pytest.approx(want.history[0]["train_loss"], rel=1e-5)
    assert result.history[0]["train_error"] == want.history[0]["train_error"]
    backend = get_backend("cuda")
    for name, layer, key in net.named_parameters():
        assert backend.is_array(layer.params[key]), name
        assert not np.array_equal(backend.to_numpy(layer.params[key]), start[name]), name
    assert_same_parameters(net, reference)
    assert not net.training  # train() leaves the network in evaluation mode
