"""Training: the paper's recipe, a loop with logs and checkpoints, resumable exactly.

The paper (Section 3.1) trains with momentum SGD, L2 weight decay, a stepped
learning rate, dropout on the first two fully connected layers, N(0, 0.01)
initial weights and random crops. :class:`TrainConfig` holds those settings;
:data:`PAPER_CONFIG` is the paper's, :data:`MINI_CONFIG` the values tuned for the
``mini`` digit network (what changed and why is in the docs chapter "Training an
OverFeat").

Determinism: everything random in an epoch (the order of the examples, the
crops, the dropout masks) is drawn from ``(seed, epoch)``, so a run resumed from
the checkpoint of epoch ``e`` continues exactly as the uninterrupted run would.

Checkpoints are one ``.npz`` file (no pickle) holding the parameters, the
optimizer's velocities and a JSON metadata record: the network's description,
the config, the epoch, the data checksum and the history. They are written
atomically and checked on load.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..common.checks import InputError, NonFiniteError, check_finite
from ..common.fileio import atomic_write
from ..common.plots import new_figure, save_figure
from ..ops.optim import SGD, StepSchedule
from . import paper
from .layers import Dropout, Sequential
from .networks import NETWORKS, build_from_specs

CHECKPOINT_FORMAT = "overfeat-scratch-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run."""

    epochs: int
    batch_size: int
    learning_rate: float
    lr_decay_epochs: tuple[int, ...]
    lr_decay_factor: float
    momentum: float
    weight_decay: float
    init_std: float | str
    # Random translations: the example is padded by ``pad`` pixels on each side and
    # a window-sized crop is taken at a random offset in [0, 2*pad]^2.
    pad: int
    flips: bool
    seed: int = 0
    eval_batch_size: int = 500

    def schedule(self) -> StepSchedule:
        return StepSchedule(self.learning_rate, tuple(self.lr_decay_epochs), self.lr_decay_factor)


# The paper's settings for its ImageNet networks (random 221x221 crops of 256 images
# are the "pad" in spirit; horizontal flips on).
PAPER_CONFIG = TrainConfig(
    epochs=90,
    batch_size=paper.TRAINING["batch_size"],
    learning_rate=paper.TRAINING["learning_rate"],
    lr_decay_epochs=paper.TRAINING["lr_decay_epochs"],
    lr_decay_factor=paper.TRAINING["lr_decay_factor"],
    momentum=paper.TRAINING["momentum"],
    weight_decay=paper.TRAINING["weight_decay"],
    init_std=paper.TRAINING["init_std"],
    pad=(paper.TRAINING["resize_short_side"] - paper.TRAINING["crop"]) // 2,
    flips=True,
)

# ``mini`` on MNIST: tuned to reach under 0.8% test error in minutes on a laptop CPU.
# Higher momentum and a short, decaying schedule instead of 90 epochs; He
# initialisation; +-2 pixel translations; no flips (a mirrored digit is not a digit).
MINI_CONFIG = TrainConfig(
    epochs=8,
    batch_size=128,
    learning_rate=0.05,
    lr_decay_epochs=(4, 6, 7),
    lr_decay_factor=0.3,
    momentum=0.9,
    weight_decay=5e-4,
    init_std="he",
    pad=2,
    flips=False,
)

CONFIGS = {"paper": PAPER_CONFIG, "mini": MINI_CONFIG}


# --------------------------------------------------------------------------------------
# Data: examples are (N, C, S, S) float32 windows already normalised; the loop crops.


def pad_examples(images: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad ``(N, C, H, W)`` examples by ``pad`` pixels on each side."""
    return np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def random_crops(padded: np.ndarray, size: int, rng: np.random.Generator, flips: bool):
    """One random ``size x size`` crop (and mirror, if ``flips``) of each padded example."""
    n, c, h, w = padded.shape
    dy = rng.integers(0, h - size + 1, n)
    dx = rng.integers(0, w - size + 1, n)
    rows = dy[:, None] + np.arange(size)[None, :]  # (N, size)
    cols = dx[:, None] + np.arange(size)[None, :]
    out = padded[
        np.arange(n)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    if flips:
        mirror = rng.random(n) < 0.5
        out[mirror] = out[mirror, :, :, ::-1]
    return np.ascontiguousarray(out, dtype=np.float32)


def evaluate(net: Sequential, images: np.ndarray, labels: np.ndarray, batch_size=500):
    """``(error rate, predictions)`` of ``net`` (in eval mode) on window-sized examples.

    Scores that are NaN or infinite (weights that overflow float32) are a
    :class:`~overfeat_scratch.common.checks.NonFiniteError`, not an error rate.
    """
    was_training = net.training
    net.eval()
    predictions = np.empty(len(images), np.int64)
    for start in range(0, len(images), batch_size):
        scores = net.backend.to_numpy(net.forward(images[start : start + batch_size]))
        check_finite(scores, f"{net.name}: the scores of examples {start}..")
        predictions[start : start + batch_size] = scores.reshape(scores.shape[0], -1).argmax(1)
    net.train(was_training)
    return float(np.mean(predictions != labels)), predictions


@runtime_checkable
class Objective(Protocol):
    """What :func:`train` needs to know about what is learnt from the labels.

    The loop itself knows nothing of classes or boxes: it crops and batches the
    examples, runs the network and updates it, and asks the objective everything
    else. Three objectives implement it: :class:`Classification` (here), the box
    regression of :mod:`overfeat_scratch.detect.localize` and the detector with its
    background class in :mod:`overfeat_scratch.detect.detection`.
    """

    #: Recorded in checkpoints; a run resumes only with the objective it started with.
    name: str

    def example_size(self, net: Sequential, examples: np.ndarray) -> int:
        """The side of the square crops trained on; raises if ``examples`` (N, C, H, W)
        do not fit ``net``."""
        ...

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Called before each epoch; an objective that draws random numbers (negative
        examples, say) reseeds from ``(seed, epoch)`` here, so resuming is exact."""
        ...

    def loss(self, backend, scores, labels) -> tuple[float, object, int, int]:
        """``(loss, gradient of the loss by scores, number right, number scored)`` of
        one batch; ``scores`` and the gradient are ``backend`` arrays."""
        ...

    def error(self, net: Sequential, examples, labels, batch_size: int = 500) -> float:
        """The test error (a fraction) after an epoch."""
        ...


class Classification:
    """What the classifier learns: softmax cross-entropy, scored by the error rate.

    Labels are class indices ``(N,)``. The network's output is ``(N, classes, 1, 1)``.
    """

    name = "classification"

    def example_size(self, net, examples) -> int:
        """The side of the crops trained on (checking the examples' shape)."""
        window = net.window()
        if examples.ndim != 4 or examples.shape[1:] != (net.in_channels, window, window):
            raise InputError(
                f"train: expected examples of shape (N, {net.in_channels}, {window}, {window}), "
                f"got {examples.shape}"
            )
        return window

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Called before each epoch (an objective drawing random numbers reseeds here)."""

    def loss(self, backend, scores, labels):
        """``(loss, gradient, number right, number scored)`` of one batch."""
        loss, grad = backend.softmax_cross_entropy(scores, labels.reshape(-1, 1, 1))
        predicted = backend.to_numpy(scores).reshape(len(labels), -1).argmax(1)
        return loss, grad, int(np.sum(predicted == labels)), len(labels)

    def error(self, net, examples, labels, batch_size=500) -> float:
        return evaluate(net, examples, labels, batch_size)[0]


CLASSIFICATION = Classification()


# --------------------------------------------------------------------------------------
# Checkpoints


def network_record(net: Sequential) -> dict:
    """How to rebuild ``net``: its name and, for the package's networks, its specs."""
    if net.name not in NETWORKS:
        raise InputError(f"checkpoint: unknown network {net.name!r}")
    specs, in_channels, _ = NETWORKS[net.name]
    return {
        "name": net.name,
        "in_channels": in_channels,
        "layers": [asdict(spec) for spec in specs],
        "parameters": {
            name: list(layer.params[key].shape) for name, layer, key in net.named_parameters()
        },
    }


def save_checkpoint(
    path, net: Sequential, optimizer: SGD | None, meta: dict, extra_networks: dict | None = None
) -> Path:
    """Write parameters, velocities and ``meta`` (JSON-able) to one ``.npz``, atomically.

    Parameters or velocities that are NaN or infinite are refused
    (:class:`~overfeat_scratch.common.checks.NonFiniteError`): a checkpoint always holds a
    network that can be loaded back.

    ``extra_networks``: ``{key: network}`` saved alongside (``extra/<key>/...``
    arrays and their records under ``meta["extra_networks"]``); read them back with
    :func:`load_extra_network`.
    """
    arrays = {f"param/{k}": v for k, v in net.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"velocity/{k}": v for k, v in optimizer.state_dict().items()})
    extras = {}
    for key, other in (extra_networks or {}).items():
        if "/" in key:
            raise InputError(f"save_checkpoint: extra network key {key!r} may not contain '/'")
        arrays.update({f"extra/{key}/{k}": v for k, v in other.state_dict().items()})
        extras[key] = network_record(other)
    record = dict(
        meta, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, network=network_record(net)
    )
    if extras:
        record["extra_networks"] = extras
    for key, value in arrays.items():
        check_finite(value, f"save_checkpoint {path}: {key}")
    text = json.dumps(record, sort_keys=True)
    arrays["metadata"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def write(f):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        f.write(buffer.getvalue())

    return atomic_write(path, write)


def read_checkpoint(path, group: str = "param") -> tuple[dict, dict, dict]:
    """``(metadata, parameters, velocities)`` from a checkpoint, checked.

    ``group``: ``"param"`` for the checkpoint's own network, ``"extra/<key>"`` for
    the parameters of an extra network stored beside it.

    A missing, truncated or foreign file is a ``ValueError`` saying which.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"checkpoint {path}: not a readable .npz file ({error})") from None
    except Exception as error:  # zipfile.BadZipFile and friends from a corrupt file
        raise InputError(f"checkpoint {path}: corrupt ({type(error).__name__}: {error})") from None
    if "metadata" not in arrays:
        raise InputError(
            f"checkpoint {path}: no metadata record; not an overfeat-scratch checkpoint"
        )
    try:
        meta = json.loads(arrays.pop("metadata").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"checkpoint {path}: unreadable metadata ({error})") from None
    check_metadata(meta, path)
    prefix = group + "/"
    params = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    velocity = {k[len("velocity/") :]: v for k, v in arrays.items() if k.startswith("velocity/")}
    return meta, params, velocity


def _require(path, meta: dict, key: str, kinds, expected: str, where: str = ""):
    """``meta[key]``, which must be there and of one of the types ``kinds``."""
    place = f"{where}.{key}" if where else key
    if key not in meta:
        raise InputError(f"checkpoint {path}: metadata has no {place!r} field; expected {expected}")
    value = meta[key]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise InputError(
            f"checkpoint {path}: metadata field {place!r} is {value!r}; expected {expected}"
        )
    return value


def _network_record(path, record, where: str) -> None:
    if not isinstance(record, dict):
        raise InputError(
            f"checkpoint {path}: metadata field {where!r} is {record!r}; expected an object "
            "with the network's name, in_channels and layers"
        )
    _require(path, record, "name", (str,), "the network's name, a string", where)
    _require(path, record, "in_channels", (int,), "an integer", where)
    _require(path, record, "layers", (list,), "a list of layer records", where)


def check_metadata(meta, path, resume: bool = False) -> dict:
    """Check a checkpoint's metadata record; the one place that knows its schema.

    Always: ``format`` and ``version``; ``network`` (``name``, ``in_channels``,
    ``layers``), and the same for each of ``extra_networks``; ``epoch``, when given,
    an integer >= 0. With ``resume`` (to continue training from it): ``epoch``,
    ``config`` (every field of :class:`TrainConfig`), ``dropout`` (``{layer: [seed,
    calls]}``) and, when given, ``history`` (a list of objects). A record that breaks
    the schema is a ``ValueError`` naming the field and what was expected.
    """
    if not isinstance(meta, dict):
        raise InputError(
            f"checkpoint {path}: metadata is {type(meta).__name__}, expected an object"
        )
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise InputError(
            f"checkpoint {path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
            f"expected {CHECKPOINT_FORMAT!r} version {CHECKPOINT_VERSION}"
        )
    _network_record(path, _require(path, meta, "network", (dict,), "an object"), "network")
    for key, record in _require_optional(path, meta, "extra_networks", dict).items():
        _network_record(path, record, f"extra_networks.{key}")
    if "epoch" in meta or resume:
        epoch = _require(path, meta, "epoch", (int,), "the number of epochs done, an integer")
        if epoch < 0:
            raise InputError(f"checkpoint {path}: metadata field 'epoch' is {epoch}; expected >= 0")
    if "objective" in meta:
        _require(path, meta, "objective", (str,), "a string")
    if not resume:
        return meta
    config = _require(path, meta, "config", (dict,), "the training config, an object")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    missing, unknown = sorted(fields - set(config)), sorted(set(config) - fields)
    if missing or unknown:
        raise InputError(
            f"checkpoint {path}: metadata field 'config' lacks {missing} and has unknown "
            f"fields {unknown}; expected exactly the fields of TrainConfig"
        )
    for key in ("epochs", "batch_size", "pad", "seed", "eval_batch_size"):
        _require(path, config, key, (int,), "an integer", "config")
    for key in ("learning_rate", "lr_decay_factor", "momentum", "weight_decay"):
        value = _require(path, config, key, (int, float), "a finite number", "config")
        if not np.isfinite(value):
            raise InputError(
                f"checkpoint {path}: metadata field 'config.{key}' is {value!r}; expected a "
                "finite number"
            )
    _require(path, config, "lr_decay_epochs", (list,), "a list of epochs", "config")
    _require(path, config, "flips", (bool,), "true or false", "config")
    _require(path, config, "init_std", (int, float, str), "a number or 'he'", "config")
    dropout = _require(path, meta, "dropout", (dict,), "{layer: [seed, calls]}, an object")
    for name, value in dropout.items():
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise InputError(
                f"checkpoint {path}: metadata field 'dropout.{name}' is {value!r}; expected "
                "[seed, calls], two integers"
            )
    history = _require_optional(path, meta, "history", list)
    if not all(isinstance(row, dict) for row in history):
        raise InputError(
            f"checkpoint {path}: metadata field 'history' holds a row that is not an object"
        )
    return meta


def _require_optional(path, meta: dict, key: str, kind):
    """``meta[key]`` if present (it must then be a ``kind``), else an empty ``kind``."""
    if key not in meta:
        return kind()
    value = meta[key]
    if not isinstance(value, kind):
        raise InputError(
            f"checkpoint {path}: metadata field {key!r} is {value!r}; expected a "
            f"{'list' if kind is list else 'JSON object'}"
        )
    return value


def load_checkpoint(path, expected_network: str | None = None, backend="numpy"):
    """``(net, metadata, velocities)``: the network rebuilt and its weights loaded.

    ``expected_network``: raise ``ValueError`` if the checkpoint holds another one.
    """
    meta, params, velocity = read_checkpoint(path)
    net = network_from_record(path, meta["network"], params, expected_network, backend)
    return net, meta, velocity


def load_extra_network(path, key: str, expected_network: str | None = None, backend="numpy"):
    """``(net, metadata)``: the extra network ``key`` stored in a checkpoint."""
    meta, params, _ = read_checkpoint(path, group=f"extra/{key}")
    records = meta.get("extra_networks", {})
    if key not in records:
        raise InputError(
            f"checkpoint {path}: holds no {key!r} network (it holds: "
            f"{', '.join(sorted(records)) or 'none'})"
        )
    return network_from_record(path, records[key], params, expected_network, backend), meta


def network_from_record(path, record, params, expected_network=None, backend="numpy"):
    name = record["name"]
    if expected_network is not None and name != expected_network:
        raise InputError(
            f"checkpoint {path}: holds the {name!r} network, expected {expected_network!r}"
        )
    if name not in NETWORKS:
        raise InputError(f"checkpoint {path}: unknown network {name!r}")
    specs, in_channels, _ = NETWORKS[name]
    if record["layers"] != [asdict(spec) for spec in specs] or record["in_channels"] != in_channels:
        raise InputError(
            f"checkpoint {path}: the {name!r} network it was saved from has other layers than "
            "this version of the package builds"
        )
    net = build_from_specs(specs, in_channels, name, seed=None)
    try:
        net.load_state_dict(params)
    except ValueError as error:
        raise InputError(f"checkpoint {path}: {error}") from None
    if backend != "numpy":
        net.to(backend)
    return net


# --------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    net: Sequential
    history: list = field(default_factory=list)
    checkpoint: Path | None = None


def dropout_layers(net):
    return [layer for layer in net if isinstance(layer, Dropout)]


def train(
    net: Sequential,
    config: TrainConfig,
    train_data: tuple[np.ndarray, np.ndarray],
    test_data: tuple[np.ndarray, np.ndarray] | None = None,
    out_dir=None,
    resume: dict | None = None,
    data_checksum: str = "",
    progress: bool = True,
    log=print,
    objective: Objective = CLASSIFICATION,
    extra_networks: dict | None = None,
    meta: dict | None = None,
) -> TrainResult:
    """Train ``net`` in place with momentum SGD; one checkpoint and log row per epoch.

    ``train_data``: ``(examples (N, C, S, S) float32, labels (N,))`` with ``S`` the
    network's window; crops are taken from the examples padded by ``config.pad``.
    ``log``: called with one line per epoch (``None``: silent).
    ``resume``: from :func:`resume_state` of a checkpoint; training continues at its
    epoch with its velocities and dropout streams.
    ``objective``: what is learnt from the labels, an :class:`Objective`:
    :data:`CLASSIFICATION` (labels are class indices), a box regression or a detector.
    ``extra_networks``: ``{key: network}`` stored beside ``net`` in every checkpoint
    (a regressor's checkpoint carries the classifier whose features it reads);
    ``meta``: more JSON-able fields for the checkpoint's record.
    """
    from tqdm import tqdm

    images, labels = train_data
    window = objective.example_size(net, images)
    if len(labels) != len(images):
        raise InputError(f"train: {len(images)} examples but {len(labels)} labels")
    if test_data is not None and len(test_data[0]) != len(test_data[1]):
        raise InputError(
            f"train: {len(test_data[0])} test examples but {len(test_data[1])} test labels"
        )
    out_dir = None if out_dir is None else Path(out_dir)
    schedule = config.schedule()
    optimizer = SGD(net, schedule(0), config.momentum, config.weight_decay)
    history, start = [], 0
    if resume is not None:
        start = int(resume["epoch"])
        optimizer.load_state_dict(resume["velocity"])
        history = list(resume.get("history", []))
        names = sorted(layer.name for layer in dropout_layers(net))
        if sorted(resume["dropout"]) != names:
            raise InputError(
                f"train: the checkpoint records dropout streams {sorted(resume['dropout'])}, "
                f"the network has dropout layers {names}"
            )
        for layer in dropout_layers(net):
            layer.seed, layer.calls = resume["dropout"][layer.name]
    padded = pad_examples(images, config.pad)
    steps = -(-len(images) // config.batch_size)
    checkpoint = None
    for epoch in range(start, config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        objective.start_epoch(config.seed, epoch)
        optimizer.lr = schedule(epoch)
        order = rng.permutation(len(images))
        net.train()
        t0 = time.perf_counter()
        loss_sum, correct, counted = 0.0, 0, 0
        bar = tqdm(
            range(steps),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
            unit="batch",
        )
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = random_crops(padded[idx], window, rng, config.flips)
            scores = net.forward(x)
            loss, grad, right, scored = objective.loss(net.backend, scores, labels[idx])
            if not np.isfinite(loss):
                raise NonFiniteError(
                    f"train: the loss is {loss} at epoch {epoch + 1}, batch {step + 1}; training "
                    "stopped"
                    + (
                        f" and {out_dir / 'checkpoint.npz'} was left as it was"
                        if out_dir is not None
                        else ""
                    )
                    + ". A smaller learning rate (or batch size) may keep it finite"
                )
            net.backward(grad, input_grad=False)
            optimizer.step()
            loss_sum += loss * len(idx)
            correct += right
            counted += scored
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")
        bar.close()
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / len(images),
            "train_error": 1 - correct / max(counted, 1),
            "learning_rate": optimizer.lr,
            "seconds": seconds,
            "images_per_second": len(images) / seconds,
        }
        if test_data is not None:
            row["test_error"] = objective.error(net, *test_data, batch_size=config.eval_batch_size)
        history.append(row)
        if log is not None:
            log(
                " ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
        if out_dir is not None:
            record = {
                **(meta or {}),
                "objective": objective.name,
                "epoch": epoch + 1,
                "config": asdict(config),
                "optimizer": {
                    "kind": "sgd",
                    "lr": optimizer.lr,
                    "momentum": config.momentum,
                    "weight_decay": config.weight_decay,
                },
                "dropout": {layer.name: [layer.seed, layer.calls] for layer in dropout_layers(net)},
                "data_checksum": data_checksum,
                "history": history,
            }
            checkpoint = save_checkpoint(
                out_dir / "checkpoint.npz", net, optimizer, record, extra_networks
            )
            write_log(out_dir, history)
    net.eval()
    return TrainResult(net, history, checkpoint)


def resume_state(meta: dict, velocity: dict, path="checkpoint") -> dict:
    """The ``resume`` argument of :func:`train` from a checkpoint's contents."""
    check_metadata(meta, path, resume=True)
    return {
        "epoch": meta["epoch"],
        "velocity": velocity,
        "history": meta.get("history", []),
        "dropout": meta["dropout"],
    }


def config_from_meta(meta: dict, path="checkpoint", **changes) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint was trained with, ``changes`` applied."""
    check_metadata(meta, path, resume=True)
    values = dict(meta["config"])
    values["lr_decay_epochs"] = tuple(values["lr_decay_epochs"])
    return replace(TrainConfig(**values), **changes)


def write_log(out_dir: Path, history: list) -> None:
    """``log.csv`` and ``log.json`` (atomically) and ``curves.png`` in ``out_dir``."""
    fields = sorted({key for row in history for key in row}, key=lambda k: (k != "epoch", k))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(out_dir / "log.csv", lambda f: f.write(text.getvalue().encode()))
    atomic_write(out_dir / "log.json", lambda f: f.write(json.dumps(history, indent=1).encode()))
    plot_curves(history, out_dir / "curves.png")


def plot_curves(history: list, path) -> None:
    epochs = [row["epoch"] for row in history]
    fig = new_figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.legend()
    right.plot(epochs, [100 * row["train_error"] for row in history], "o-", label="train")
    if "test_error" in history[0]:
        right.plot(epochs, [100 * row["test_error"] for row in history], "o-", label="test")
    right.set_xlabel("epoch")
    right.set_ylabel("error (%)")
    right.set_yscale("log")
    right.legend()
    fig.tight_layout()
    save_figure(fig, path)
