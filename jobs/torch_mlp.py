"""A PyTorch MLP on tabular data: CPU, or a GPU when the trial has one; DDP through Ray Train with several workers.

torch is the ``torch`` extra (``pip install -e ".[torch]"``); this module imports it only inside :meth:`Job.train`
and :meth:`Job.load`, so importing ``jobs`` without torch leaves the GBDT template and the platform working.

Each trial trains one MLP (``layers`` hidden layers of ``hidden`` units, ReLU, dropout) with AdamW, and after
every epoch scores the validation split and reports, so ASHA can stop weak trials early (an epoch is a step).

Devices: one worker trains on ``cuda`` when its Ray worker was given a GPU (``sweep.resources.gpu`` > 0; Ray then
sets ``CUDA_VISIBLE_DEVICES``), else on CPU. Several workers (``sweep.resources.workers`` > 1,
``Job.distributed = "torch"``): the trial is a Ray Train ``TorchTrainer`` run; ``ray.train.torch.get_device()``
picks each worker's device, ``ray.train.torch.prepare_model`` wraps the model in DistributedDataParallel (gloo on
CPU, nccl on GPU), and a ``DistributedSampler`` gives each worker an equal share of the training rows per epoch,
so gradients are averaged over all of them. Every worker scores the whole validation split with the same weights;
rank 0's reports reach Tune and rank 0 saves the model.

Features: numeric and bool columns are standardised with the training rows' mean and standard deviation (a null
is the mean); every other column (strings, dictionary-encoded...) is one-hot encoded over its ``max_categories``
most frequent training values (a value outside them: all zeros). Labels and objectives as in
``jobs/tabular_gbdt.py``: ``regression`` (numbers; trained on the standardised label), ``binary`` (two classes),
``multiclass``; the classes are the sorted labels of the train and validation splits.

Saved: ``model.pt`` (the ``state_dict``) and ``mlp.json`` (:class:`MlpMeta`: features, normalisation, categories,
classes, architecture). Serving loads it on CPU.

Checkpoints (``Job.checkpoints``, for ``scheduler: pbt``): every epoch reports with a checkpoint writer
(``ctx.report_checkpoint``; the platform writes one only at the steps PBT perturbs at): ``checkpoint.pt`` (the
weights, AdamW's state, the epochs done, the config) and ``mlp.json``. A trial given a checkpoint
(``ctx.restored_checkpoint()``) loads them and trains on from the next epoch with its own config: the learning
rate, weight decay, dropout and batch size (``Job.mutable_params``, what PBT may mutate) take effect from there;
the architecture and the features come from the checkpoint, and a config that differs there is refused. Each
epoch's shuffle is seeded with ``seed`` + epoch, so a trial resumed with the same config trains as if it had not
stopped (with ``dropout`` 0). Multi-worker trials do not checkpoint (PBT takes one-process trials only).

Config keys: ``objective``, ``hidden`` (64), ``layers`` (2), ``dropout`` (0.0), ``lr`` (1e-3), ``weight_decay``
(0.0), ``batch_size`` (256), ``epochs`` (20), ``seed`` (0), ``num_threads`` (1, torch's CPU threads per worker),
``max_categories`` (32).

Example:
    >>> sorted(Job.metrics_for({"objective": "regression"})), Job.distributed
    (['mae', 'rmse'], 'torch')
    >>> Hyper.from_config({"hidden": 8, "epochs": "3"}).model_dump(include={"hidden", "epochs", "layers"})
    {'hidden': 8, 'layers': 2, 'epochs': 3}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamtune.errors import ConfigError, DataError
from streamtune.job import Job as BaseJob
from streamtune.job import Predictor, TrainContext
from streamtune.validation.labels import class_list, encode_labels
from streamtune.validation.metrics import METRICS

if TYPE_CHECKING:
    import torch

OBJECTIVES = ("regression", "binary", "multiclass")
"""The objectives this template trains."""

MODEL_FILE = "model.pt"
META_FILE = "mlp.json"
CHECKPOINT_FILE = "checkpoint.pt"
MUTABLE_PARAMS = frozenset({"lr", "weight_decay", "dropout", "batch_size"})
"""The config keys a trial may change when it resumes from a checkpoint (``Job.mutable_params``)."""
_FIXED_ON_RESUME = ("objective", "hidden", "layers", "max_categories")
_REGRESSION_METRICS = ("rmse", "mae")
_CLASSIFIER_METRICS = ("logloss", "accuracy", "auc", "pr_auc", "f1", "balanced_accuracy")


class Hyper(BaseModel):
    """The config keys this template reads, typed (values from Tune may come as strings or floats)."""

    model_config = ConfigDict(extra="ignore")

    objective: Literal["regression", "binary", "multiclass"] = Field("regression", description="What to fit.")
    hidden: int = Field(64, ge=1, description="Units per hidden layer.")
    layers: int = Field(2, ge=0, description="Hidden layers (0: a linear model).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(256, ge=1, description="Rows per optimiser step, per worker.")
    epochs: int = Field(20, ge=1, description="Passes over the training rows; one report each.")
    seed: int = Field(0, description="Seed of the weights and the shuffling.")
    num_threads: int = Field(1, ge=1, description="torch's CPU threads per worker.")
    max_categories: int = Field(32, ge=1, description="Most one-hot columns per non-numeric feature.")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Hyper:
        """Read the trial's config; integers given as floats (a Tune sample) are rounded.

        Raises:
            ConfigError: a key has a value outside its range, naming the key, the value and the rule.
        """
        ints = ("hidden", "layers", "batch_size", "epochs", "seed", "num_threads", "max_categories")
        values = {k: (round(float(v)) if k in ints and isinstance(v, (int, float, str)) else v)
                  for k, v in config.items() if k in cls.model_fields}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f'Got "{config.get(key)}" for {key}; {err["msg"]}') from None


class MlpMeta(BaseModel):
    """``mlp.json``: what a saved model needs beside its weights to predict."""

    objective: Literal["regression", "binary", "multiclass"] = Field(description="What the model fits.")
    features: list[str] = Field(description="The feature columns, in training order.")
    numeric: list[str] = Field(description="The features used as numbers.")
    mean: list[float] = Field(description="Training mean of each numeric feature (nulls become it).")
    std: list[float] = Field(description="Training standard deviation of each numeric feature (1 where 0).")
    categories: dict[str, list[str]] = Field(description="Each non-numeric feature's one-hot values.")
    classes: list[Any] | None = Field(None, description="Class labels in output order; None for regression.")
    label_mean: float = Field(0.0, description="Regression: the label's training mean.")
    label_std: float = Field(1.0, description="Regression: the label's training standard deviation.")
    hidden: int = Field(description="Units per hidden layer.")
    layers: int = Field(description="Hidden layers.")
    dropout: float = Field(description="Dropout after each hidden layer.")

    @property
    def inputs(self) -> int:
        """Width of the input layer."""
        return len(self.numeric) + sum(len(v) for v in self.categories.values())

    @property
    def outputs(self) -> int:
        """Width of the output layer: 1 for regression and binary, one per class for multiclass."""
        return len(self.classes) if self.objective == "multiclass" and self.classes else 1


def _is_number(dtype: pa.DataType) -> bool:
    t = pa.types
    return bool(t.is_integer(dtype) or t.is_floating(dtype) or t.is_decimal(dtype) or t.is_boolean(dtype)
                or t.is_null(dtype))


def _strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A non-numeric column as strings (dictionary-encoded, large strings, dates... alike)."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col if pa.types.is_string(col.type) else col.cast(pa.string())


def _numbers(col: pa.ChunkedArray, name: str) -> np.ndarray:
    try:
        return np.asarray(col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=float)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f'Got {col.type} values for feature column "{name}"; the model was trained with numbers '
                        f"there ({exc})") from None


def fit_features(table: pa.Table, features: Sequence[str], max_categories: int) -> dict[str, Any]:
    """The normalisation and the one-hot values, from the training rows (the ``MlpMeta`` fields they fill).

    Example:
        >>> t = pa.table({"x": [1.0, 3.0, None], "c": ["a", "b", "a"]})
        >>> f = fit_features(t, ["x", "c"], 8)
        >>> f["numeric"], f["mean"], f["std"], f["categories"]
        (['x'], [2.0], [1.0], {'c': ['a', 'b']})
    """
    numeric = [f for f in features if _is_number(table.schema.field(f).type)]
    mean, std = [], []
    for name in numeric:
        values = _numbers(table.column(name), name)
        finite = values[np.isfinite(values)]
        mean.append(float(finite.mean()) if finite.size else 0.0)
        sd = float(finite.std()) if finite.size else 0.0
        std.append(sd if sd > 0 else 1.0)
    categories = {}
    for name in features:
        if name not in numeric:
            counts = pc.value_counts(_strings(table.column(name)).drop_null())
            pairs = sorted(zip(counts.field("counts").to_pylist(), counts.field("values").to_pylist(), strict=True),
                           key=lambda cv: (-cv[0], cv[1]))
            categories[name] = sorted(v for _, v in pairs[:max_categories])
    return {"numeric": numeric, "mean": mean, "std": std, "categories": categories}


def encode(table: pa.Table, meta: MlpMeta) -> np.ndarray:
    """The model's input matrix (float32): standardised numbers, then one-hot categories.

    Raises:
        KeyError: a feature column is missing (naming it, for serving's 422).
        DataError: a numeric feature holds values that are not numbers.
    """
    parts = []
    for name, mean, std in zip(meta.numeric, meta.mean, meta.std, strict=True):
        values = _numbers(table.column(name), name)
        parts.append(((np.where(np.isfinite(values), values, mean) - mean) / std)[:, None])
    for name, values in meta.categories.items():
        codes = pc.index_in(_strings(table.column(name)), value_set=pa.array(values, pa.string()))
        codes_np = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=float)  # NaN: null or unseen
        onehot = np.zeros((table.num_rows, len(values)))
        seen = np.isfinite(codes_np)
        onehot[np.flatnonzero(seen), codes_np[seen].astype(int)] = 1.0
        parts.append(onehot)
    matrix = np.hstack(parts) if parts else np.zeros((table.num_rows, 0))
    return matrix.astype(np.float32)


def network(meta: MlpMeta) -> torch.nn.Sequential:
    """The MLP: ``layers`` x (Linear, ReLU, Dropout), then a Linear to the outputs."""
    import torch

    modules: list[torch.nn.Module] = []
    width = meta.inputs
    for _ in range(meta.layers):
        modules += [torch.nn.Linear(width, meta.hidden), torch.nn.ReLU(), torch.nn.Dropout(meta.dropout)]
        width = meta.hidden
    modules.append(torch.nn.Linear(width, meta.outputs))
    return torch.nn.Sequential(*modules)


def _scores(model: torch.nn.Module, x: np.ndarray, meta: MlpMeta, device: Any = "cpu") -> np.ndarray:
    """What :meth:`Predictor.predict_scores` gives: values, P(classes[1]), or per-class probabilities."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), 65536):
            out.append(model(torch.from_numpy(x[start:start + 65536]).to(device)).float().cpu())
    logits = torch.cat(out) if out else torch.zeros((0, meta.outputs))
    if meta.objective == "regression":
        return (logits[:, 0] * meta.label_std + meta.label_mean).numpy().astype(float)
    if meta.objective == "binary":
        return torch.sigmoid(logits[:, 0]).numpy().astype(float)
    return torch.softmax(logits, dim=1).numpy().astype(float)


class MlpPredictor(Predictor):
    """A loaded MLP, on CPU.

    Args:
        model: The network with its trained weights.
        meta: What ``mlp.json`` says.
    """

    def __init__(self, model: torch.nn.Module, meta: MlpMeta) -> None:
        self.model = model
        self.meta = meta
        self.features = meta.features
        self.classes = list(meta.classes) if meta.classes is not None else None

    def predict_scores(self, batch: pa.Table) -> np.ndarray:
        """Values (regression), the probability of ``classes[1]`` (binary) or per-class probabilities."""
        return _scores(self.model, encode(batch, self.meta), self.meta)

    def predict(self, batch: pa.Table) -> list[Any]:
        """One value per row (regression) or one class label per row (the most probable class)."""
        scores = self.predict_scores(batch)
        if self.classes is None:
            return list(scores.tolist())
        codes = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(int)
        return [self.classes[int(i)] for i in codes]


class Resumed(BaseModel):
    """What a trial resumes from: a checkpoint's ``checkpoint.pt`` and ``mlp.json``, read."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    meta: MlpMeta = Field(description="The checkpoint's features, normalisation and architecture.")
    model: dict[str, Any] = Field(description="The network's state_dict.")
    optimiser: dict[str, Any] = Field(description="AdamW's state_dict.")
    epoch: int = Field(ge=0, description="Epochs done: the trial trains on from this one (0-based).")

    @classmethod
    def read(cls, folder: Path, hp: Hyper) -> Resumed:
        """Read a checkpoint folder and check ``hp`` keeps what a checkpoint cannot change.

        Raises:
            ConfigError: ``objective``, ``hidden``, ``layers`` or ``max_categories`` differ from the checkpoint's.
        """
        import torch

        state = torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        for key in _FIXED_ON_RESUME:
            was, now = state["hyper"].get(key), getattr(hp, key)
            if was != now:
                raise ConfigError(f'Got "{now}" for {key}; the checkpoint this trial resumes from was trained with '
                                  f"{key} {was}, and only {sorted(MUTABLE_PARAMS)} can change mid-trial",
                                  fix=f"keep {key} in job.params, out of sweep.space")
        meta = MlpMeta.model_validate_json((folder / META_FILE).read_text())
        return cls(meta=meta.model_copy(update={"dropout": hp.dropout}), model=state["model"],
                   optimiser=state["optimiser"], epoch=int(state["epoch"]))


def write_checkpoint(folder: str, *, net: torch.nn.Module, optimiser: Any, meta: MlpMeta, hp: Hyper,
                     epoch: int) -> None:
    """Write what :meth:`Resumed.read` reads into ``folder``: after ``epoch`` epochs (1-based)."""
    import torch

    out = Path(folder)
    torch.save({"model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "optimiser": optimiser.state_dict(), "epoch": epoch, "hyper": hp.model_dump()}, out / CHECKPOINT_FILE)
    (out / META_FILE).write_text(meta.model_dump_json(indent=2))


class Job(BaseJob):
    """PyTorch MLP template job."""

    params = frozenset(Hyper.model_fields)
    metrics = {"rmse": "min", "mae": "min", "logloss": "min", "accuracy": "max", "auc": "max", "pr_auc": "max",
               "f1": "max", "balanced_accuracy": "max"}
    distributed = "torch"
    checkpoints = True
    mutable_params = MUTABLE_PARAMS

    @classmethod
    def metrics_for(cls, params: Mapping[str, Any]) -> Mapping[str, Literal["min", "max"]]:
        """rmse and mae for regression; logloss, accuracy, auc, pr_auc, f1 and balanced_accuracy for binary and
        multiclass. Without a fixed objective, any of them.

        Raises:
            ConfigError: the objective is none of :data:`OBJECTIVES`.
        """
        if "objective" not in params:
            return cls.metrics
        objective = Hyper.from_config({"objective": params["objective"]}).objective
        names = _REGRESSION_METRICS if objective == "regression" else _CLASSIFIER_METRICS
        return {n: cls.metrics[n] for n in names}

    def train(self, config: dict[str, Any], ctx: TrainContext) -> None:
        import torch

        hp = Hyper.from_config(config)
        torch.manual_seed(hp.seed)
        torch.set_num_threads(hp.num_threads)
        train_y, valid_y, classes = _labels(ctx, hp.objective)
        folder = ctx.restored_checkpoint()
        resumed = Resumed.read(folder, hp) if folder is not None else None
        meta = resumed.meta if resumed is not None else MlpMeta(
            objective=hp.objective, features=list(ctx.features), classes=classes, hidden=hp.hidden,
            layers=hp.layers, dropout=hp.dropout, **fit_features(ctx.train, ctx.features, hp.max_categories),
            **_label_scale(train_y, hp))
        train_x, valid_x = encode(ctx.train, meta), encode(ctx.valid, meta)
        device = _device(ctx)
        net = network(meta)
        if resumed is not None:
            net.load_state_dict(resumed.model)
        model = _on_device(net, device, ctx)
        optimiser = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if resumed is not None:  # AdamW's moments and step from the checkpoint; lr and weight decay from this config
            optimiser.load_state_dict(resumed.optimiser)
            for group in optimiser.param_groups:
                group["lr"], group["weight_decay"] = hp.lr, hp.weight_decay
        loss_fn, target = _loss(meta, train_y)
        loader, set_epoch = _loader(train_x, target, hp, ctx)
        names = list(self.metrics_for({"objective": hp.objective}))
        start = resumed.epoch if resumed is not None else 0
        if start >= hp.epochs:  # nothing left to train: report what the saved model scores
            ctx.report(_evaluate(names, valid_y, _scores(net, valid_x, meta, device)) | {"epoch": start})
        for epoch in range(start, hp.epochs):
            set_epoch(epoch)
            model.train()
            total, rows = 0.0, 0
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                optimiser.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                optimiser.step()
                total, rows = total + float(loss.detach()) * len(xb), rows + len(xb)
            scores = _scores(net, valid_x, meta, device)  # the wrapped module itself: no collective in eval
            metrics = _evaluate(names, valid_y, scores) | {"epoch": epoch + 1, "train_loss": total / max(rows, 1),
                                                           "train_rows": rows}
            ctx.report_checkpoint(metrics, partial(write_checkpoint, net=net, optimiser=optimiser, meta=meta, hp=hp,
                                                   epoch=epoch + 1))
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        ctx.save_model(lambda folder: self._save(state, meta, folder))

    @staticmethod
    def _save(state: dict[str, Any], meta: MlpMeta, folder: str) -> None:
        import torch

        out = Path(folder)
        torch.save(state, out / MODEL_FILE)
        (out / META_FILE).write_text(meta.model_dump_json(indent=2))

    def load(self, artifact_dir: str | Path) -> MlpPredictor:
        import torch

        folder = Path(artifact_dir)
        meta = MlpMeta.model_validate_json((folder / META_FILE).read_text())
        model = network(meta)
        model.load_state_dict(torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True))
        model.eval()
        return MlpPredictor(model, meta)


def _device(ctx: TrainContext) -> Any:
    """This worker's device: Ray Train's (several workers), else cuda when the worker was given a GPU."""
    import torch

    if ctx.world_size > 1:
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _on_device(net: torch.nn.Module, device: Any, ctx: TrainContext) -> torch.nn.Module:
    """``net`` moved to ``device`` (in place), and with several workers wrapped in DistributedDataParallel by Ray
    Train (the wrapper is what trains; ``net`` keeps the same weights)."""
    if ctx.world_size <= 1:
        return net.to(device)
    import ray.train.torch

    return ray.train.torch.prepare_model(net)


def _loader(x: np.ndarray, y: torch.Tensor, hp: Hyper, ctx: TrainContext) -> tuple[Any, Callable[[int], Any]]:
    """Batches of the training rows, and what to call before each epoch: shuffled with ``seed`` + epoch (so a
    resumed trial shuffles as it would have); an equal share per worker with several."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    data = TensorDataset(torch.from_numpy(x), y)
    if ctx.world_size > 1:
        sampler = DistributedSampler(data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=hp.seed)
        return DataLoader(data, batch_size=hp.batch_size, sampler=sampler), sampler.set_epoch
    generator = torch.Generator()
    loader = DataLoader(data, batch_size=hp.batch_size, shuffle=True, generator=generator)
    return loader, lambda epoch: generator.manual_seed(hp.seed + epoch)


def _loss(meta: MlpMeta, train_y: np.ndarray) -> tuple[Any, torch.Tensor]:
    """The loss and the training target it compares the outputs with."""
    import torch

    if meta.objective == "regression":
        scaled = (train_y - meta.label_mean) / meta.label_std
        return (lambda out, y: torch.nn.functional.mse_loss(out[:, 0], y)), torch.from_numpy(scaled.astype(np.float32))
    if meta.objective == "binary":
        return ((lambda out, y: torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y)),
                torch.from_numpy(train_y.astype(np.float32)))
    return torch.nn.CrossEntropyLoss(), torch.from_numpy(train_y.astype(np.int64))


def _label_scale(train_y: np.ndarray, hp: Hyper) -> dict[str, float]:
    if hp.objective != "regression":
        return {}
    std = float(train_y.std())
    return {"label_mean": float(train_y.mean()), "label_std": std if std > 0 else 1.0}


def _evaluate(names: Sequence[str], y: Any, scores: Any) -> dict[str, float]:
    return {n: float(METRICS[n](y, scores)) for n in names}


def _labels(ctx: TrainContext, objective: str) -> tuple[np.ndarray, np.ndarray, list[Any] | None]:
    """The train and validation labels (values, or class codes) and the classes (None for regression).

    Raises:
        DataError: a regression label is not numeric or has nulls; a classifier's train split has fewer than two
            classes; a binary label has more than two.
    """
    label = ctx.label
    train, valid = ctx.train.column(label), ctx.valid.column(label)
    if objective == "regression":
        for split, col in (("train", train), ("validation", valid)):
            if not _is_number(col.type) or pa.types.is_null(col.type) or col.null_count:
                raise DataError(f'Got {col.type} values with {col.null_count} nulls in label column "{label}" of the '
                                f"{split} split; objective regression needs numbers in every row",
                                fix="set job.params.objective to binary or multiclass to classify it")
        return _numbers(train, label), _numbers(valid, label), None
    if len(class_list(train)) < 2:
        raise DataError(f'Got fewer than two classes in label column "{label}" of the train split; objective '
                        f"{objective} needs at least two")
    classes = class_list(train.to_pylist() + valid.to_pylist())
    if objective == "binary" and len(classes) != 2:
        raise DataError(f'Got {len(classes)} classes in label column "{label}" ({classes[:10]}); objective binary '
                        "needs exactly two", fix="set job.params.objective to multiclass")
    return encode_labels(train, classes), encode_labels(valid, classes), classes
