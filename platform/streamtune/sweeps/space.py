"""Translate a JobSpec search space into Optuna's define-by-run search, and build the sampler and scheduler.

Every sweep but a PBT one samples through :class:`DefineByRun`, passed to ``OptunaSearch`` as ``space=`` (the
Tuner gets no ``param_space``): dimensions are suggested in :func:`condition_order`, and a dimension with
``when`` only when its condition holds, so a trial's params hold exactly the dimensions it sampled. PBT takes no
searcher (Ray Tune): its trials start from :func:`to_tune_space` at random and it mutates the same space.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from streamtune.config.jobspec import ParamSpec, SweepSpec, condition_order
from streamtune.errors import ConfigError


def to_tune_space(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Map each :class:`ParamSpec` to a ``ray.tune`` sampler (PBT's ``param_space`` and mutations).

    Example:
        >>> from streamtune.config import ParamSpec
        >>> sorted(to_tune_space({"lr": ParamSpec(type="loguniform", low=0.01, high=0.1)}))
        ['lr']
    """
    from ray import tune

    out: dict[str, Any] = {}
    for name, p in space.items():
        low, high = float(p.low or 0.0), float(p.high or 0.0)  # ParamSpec guarantees both for these types
        if p.type == "uniform":
            out[name] = tune.uniform(low, high)
        elif p.type == "loguniform":
            out[name] = tune.loguniform(low, high)
        elif p.type == "int":
            out[name] = tune.randint(int(low), int(high) + 1)  # randint's upper bound is exclusive
        else:
            out[name] = tune.choice(list(p.values or []))
    return out


class DefineByRun:
    """Optuna define-by-run search space of a JobSpec ``sweep.space``: call it with an Optuna trial.

    It suggests each dimension in :func:`~streamtune.config.jobspec.condition_order`; a dimension with ``when`` is
    suggested only when every parameter it names was suggested in this trial with one of the listed values. A
    class, not a closure, so Tune can pickle the searcher with it.

    Example:
        >>> import optuna
        >>> from streamtune.config import ParamSpec
        >>> space = {"kind": ParamSpec(type="choice", values=["tree", "linear"]),
        ...          "depth": ParamSpec(type="int", low=2, high=6, when={"kind": "tree"}),
        ...          "lr": ParamSpec(type="loguniform", low=0.01, high=0.3)}
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
        >>> for _ in range(6):
        ...     trial = study.ask()
        ...     DefineByRun(space)(trial)
        ...     assert ("depth" in trial.params) == (trial.params["kind"] == "tree"), trial.params
        >>> sorted({tuple(sorted(t.params)) for t in study.trials})
        [('depth', 'kind', 'lr'), ('kind', 'lr')]
    """

    def __init__(self, space: Mapping[str, ParamSpec]) -> None:
        self.space = dict(space)
        self.order = condition_order(self.space)

    def __call__(self, trial: Any) -> None:
        taken: dict[str, Any] = {}
        for name in self.order:
            p = self.space[name]
            if p.when and not all(other in taken and taken[other] in allowed for other, allowed in p.when.items()):
                continue
            taken[name] = suggest(trial, name, p)
        return None  # OptunaSearch takes what was suggested


def suggest(trial: Any, name: str, p: ParamSpec) -> Any:
    """Suggest one dimension on an Optuna trial (the same distributions :func:`to_tune_space` maps to)."""
    low, high = float(p.low or 0.0), float(p.high or 0.0)
    if p.type == "uniform":
        return trial.suggest_float(name, low, high)
    if p.type == "loguniform":
        return trial.suggest_float(name, low, high, log=True)
    if p.type == "int":
        return trial.suggest_int(name, int(low), int(high))
    return trial.suggest_categorical(name, list(p.values or []))


def grid_space(space: Mapping[str, ParamSpec]) -> dict[str, list[Any]]:
    """The points of each dimension for Optuna's GridSampler (``search: grid``).

    Raises:
        ConfigError: a continuous dimension has no ``values`` (the JobSpec refuses it first).

    Example:
        >>> from streamtune.config import ParamSpec
        >>> grid_space({"depth": ParamSpec(type="int", low=2, high=4),
        ...             "lr": ParamSpec(type="uniform", low=0, high=1, values=[0.1, 0.3]),
        ...             "kind": ParamSpec(type="choice", values=["a", "b"])})
        {'depth': [2, 3, 4], 'lr': [0.1, 0.3], 'kind': ['a', 'b']}
    """
    out: dict[str, list[Any]] = {}
    for name, p in space.items():
        points = p.grid_values()
        if points is None:
            raise ConfigError(f'Got "grid" for sweep.search; dimension {name} is {p.type} without values, so it '
                              "has no grid points",
                              fix=f"give sweep.space.{name}.values, or make it an int or a choice")
        out[name] = points
    return out


def run_seed(spec: SweepSpec, run_id: str) -> int | None:
    """The sampler seed of one run: reproducible per run, but different runs explore different points.

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(metric="m", mode="min", space={"a": {"type": "int", "low": 1, "high": 2}})
        >>> run_seed(s, "r-1") == run_seed(s, "r-1") != run_seed(s, "r-2")
        True
    """
    if spec.seed is None:
        return None
    return (spec.seed * 1_000_003 + int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)) % 2**31


def nsga2_population(planned: int) -> int:
    """NSGA-II's population per generation: a quarter of the trials, from 2 to Optuna's default 50, so a sweep of
    a few dozen trials still breeds a few generations (with the default 50 it would never pass the first, random
    one).

    Example:
        >>> nsga2_population(4), nsga2_population(40), nsga2_population(1000)
        (2, 10, 50)
    """
    return max(2, min(50, planned // 4))


def make_sampler(spec: SweepSpec, seed: int | None = None) -> Any:
    """The Optuna sampler ``sweep.search`` names, seeded.

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(search="grid", metric="m", mode="min", space={"a": {"type": "int", "low": 1, "high": 3}})
        >>> type(make_sampler(s, seed=1)).__name__
        'TuneGridSampler'
    """
    import optuna

    if spec.search == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if spec.search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.search == "grid":
        return _tune_grid_sampler()(grid_space(spec.space), seed=seed)
    if spec.search == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=nsga2_population(spec.planned_trials))
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise ConfigError('Got "cmaes" for sweep.search; it needs the cmaes package (pip install cmaes)') from None
    return optuna.samplers.CmaEsSampler(seed=seed)


_GRID_SAMPLER: list[type] = []


def _tune_grid_sampler() -> type:
    """Build :class:`TuneGridSampler` on first use, so importing this module does not import Optuna."""
    if not _GRID_SAMPLER:
        import optuna

        class TuneGridSampler(optuna.samplers.GridSampler):
            """Optuna's GridSampler without its ``study.stop()`` once the grid is done: Tune, not an ``optimize``
            loop, runs the trials (``num_samples`` capped to the grid's size, ``SweepSpec.planned_trials``), and
            ``stop`` outside ``optimize`` raises, which Tune would log as a warning at the last grid point."""

            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                return None

        TuneGridSampler.__module__, TuneGridSampler.__qualname__ = __name__, "TuneGridSampler"  # pickled by name
        _GRID_SAMPLER.append(TuneGridSampler)
    return _GRID_SAMPLER[0]


def __getattr__(name: str) -> Any:
    if name == "TuneGridSampler":  # what unpickling a searcher looks up
        return _tune_grid_sampler()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_searcher(spec: SweepSpec, seed: int | None = None,
                  points: Sequence[Mapping[str, Any]] = (), lookahead: int = 0) -> Any:
    """OptunaSearch over :class:`DefineByRun` with the spec's sampler, limited to ``max_concurrent`` trials at once
    (plus ``lookahead`` waiting for resources: :func:`streamtune.sweeps.resources.lookahead`); with ``search:
    nsga2`` it optimises every objective (lists of metrics and modes). None for ``scheduler: pbt``, which takes no
    searcher.

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(search="nsga2", metric="rmse", mode="min", space={"a": {"type": "int", "low": 1, "high": 3}},
        ...               objectives=[{"metric": "rmse", "mode": "min"}, {"metric": "mb", "mode": "min"}])
        >>> make_searcher(s, seed=0).searcher.metric
        ['rmse', 'mb']
    """
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    if spec.scheduler == "pbt":
        return None
    metric: str | list[str] = spec.metric
    mode: str | list[str] = spec.mode
    if spec.objectives:
        metric, mode = [o.metric for o in spec.objectives], [o.mode for o in spec.objectives]
    searcher = OptunaSearch(space=DefineByRun(spec.space), metric=metric, mode=mode, sampler=make_sampler(spec, seed),
                            points_to_evaluate=warm_points(spec, points) or None)
    return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent + lookahead)


def pbt_population(spec: SweepSpec, seed: int | None = None) -> Any:
    """PBT's first population: Tune's ``BasicVariantGenerator`` (the one search algorithm PBT takes) drawing
    :func:`to_tune_space` at random, seeded with the run's seed so a run draws the same trials again, at most
    ``max_concurrent`` at once.

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(scheduler="pbt", search="random", max_concurrent=3, metric="m", mode="min",
        ...               space={"a": {"type": "uniform", "low": 0, "high": 1}})
        >>> pbt_population(s, seed=7).max_concurrent
        3
    """
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=spec.max_concurrent, random_state=seed)


def warm_points(spec: SweepSpec, points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The warm-start points the searcher evaluates first (``SweepRequest.warm_start``), for this sweep: none for
    a grid (its trials are the grid's points, capped) or PBT (no searcher); otherwise at most ``num_samples``.

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(metric="m", mode="min", num_samples=1, space={"a": {"type": "int", "low": 1, "high": 3}})
        >>> warm_points(s, [{"a": 2}, {"a": 3}])
        [{'a': 2}]
        >>> warm_points(s.model_copy(update={"search": "grid"}), [{"a": 2}])
        []
    """
    if spec.search == "grid" or spec.scheduler == "pbt":
        return []
    return [dict(p) for p in points][: spec.num_samples]


def make_scheduler(spec: SweepSpec) -> Any:
    """The trial scheduler ``sweep.scheduler`` names; each stops trials by ``training_iteration`` (report steps),
    ``asha`` at rungs before ``max_t`` only (:func:`asha`). Tune gives it ``sweep.metric`` and ``sweep.mode``
    (with nsga2 it prunes by that objective alone).

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(scheduler="hyperband", metric="m", mode="min", max_t=9,
        ...               space={"a": {"type": "int", "low": 1, "high": 3}})
        >>> type(make_scheduler(s)).__name__, make_scheduler(s)._stop_last_trials
        ('HyperBandScheduler', False)
    """
    from ray.tune.schedulers import (
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )

    if spec.scheduler in ("none", "fifo"):
        return FIFOScheduler()
    if spec.scheduler == "hyperband":
        # Synchronous HyperBand pauses trials at bracket milestones and would stop a trial that reached max_t, cutting
        # it off before the job's save_model() after its final report (as ASHA would; see below). stop_last_trials=
        # False lets a trial that survived every halving run to its own end, and max_t stays the job's real number
        # of report steps, so the brackets' milestones land on steps the job reports. Trials keep no checkpoint
        # here (checkpoint_period: PBT only), so a paused trial starts again from its first step when it resumes:
        # its model is still saved, at the cost of the steps run again.
        return HyperBandScheduler(time_attr="training_iteration", max_t=spec.max_t, stop_last_trials=False)
    if spec.scheduler == "median":
        # min_time_slice=inf: while fewer than 3 other trials have reached a step, Tune's rule would pause a trial
        # to let a waiting one run, and a job that does not checkpoint would then start it again from its first
        # step, over and over; so a trial only ever stops (worse than the median of the others' running means).
        return MedianStoppingRule(time_attr="training_iteration", grace_period=float(spec.grace_period),
                                  min_time_slice=math.inf)  # type: ignore[arg-type]  # Ray says int; compares only
    if spec.scheduler == "pbt":
        # Every grace_period steps the bottom quarter copies a top trial's checkpoint and mutates its params in the
        # same space: only jobs that checkpoint can take it (checked at submit, sweeps/checks.py). The trials
        # checkpoint at exactly those steps (checkpoint_period), which PBT saves and copies.
        return PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=spec.grace_period,
                                       hyperparam_mutations=pbt_mutations(spec.space),
                                       custom_explore_fn=ClipToSpace(spec.space))
    return asha(spec)


def asha(spec: SweepSpec) -> Any:
    """ASHA with every rung strictly before the last report step ``max_t``: rungs at ``grace_period`` times 4 to
    the k below ``max_t``, and a trial that passed them all runs to its end (``stop_last_trials=False``).

    A rung at ``max_t`` itself (Tune places one when ``max_t`` is ``grace_period`` times a power of 4, e.g. the
    default grace 5 with ``max_t`` 20) would stop a trial at its final report, after every step was paid and before
    the job's ``save_model()``: no step saved, and the model lost. So Tune gets ``max_t - 1`` as its ``max_t``, and
    with ``grace_period >= max_t`` (no rung could come before the last step) every trial runs to its end (FIFO).

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(metric="m", mode="min", max_t=20, grace_period=5,
        ...               space={"a": {"type": "int", "low": 1, "high": 3}})
        >>> a = asha(s)
        >>> [rung for rung, _ in a._brackets[0]._rungs], a._stop_last_trials
        ([5], False)
        >>> [rung for rung, _ in asha(s.model_copy(update={"grace_period": 1}))._brackets[0]._rungs]
        [16, 4, 1]
        >>> type(asha(s.model_copy(update={"grace_period": 20}))).__name__
        'FIFOScheduler'
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.grace_period >= spec.max_t:
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration", max_t=spec.max_t - 1, grace_period=spec.grace_period,
                         stop_last_trials=False)


def checkpoint_period(spec: SweepSpec) -> int:
    """Every how many report steps a trial of this sweep keeps a checkpoint (0: never): ``grace_period`` under PBT,
    the steps it perturbs at, so the checkpoint PBT saves for a top trial is the one of that very step. Other
    schedulers restart a paused trial from its first step and take none. A trial's last step (``max_t``) keeps
    none either: its model is saved right after it (``save_model``), and PBT skips copying a trial that has none.

    Example:
        >>> from streamtune.config import SweepSpec
        >>> s = SweepSpec(scheduler="pbt", search="random", grace_period=3, metric="m", mode="min",
        ...               space={"a": {"type": "uniform", "low": 0, "high": 1}})
        >>> checkpoint_period(s), checkpoint_period(s.model_copy(update={"scheduler": "asha"}))
        (3, 0)
    """
    return spec.grace_period if spec.scheduler == "pbt" else 0


def pbt_mutations(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations``: a choice as the list of its values (PBT moves to a neighbouring value or
    draws another; as a ``tune.choice`` it would multiply the value by 0.8 or 1.2), every other dimension as its
    ``ray.tune`` sampler (:func:`to_tune_space`; PBT multiplies by 0.8 or 1.2, or draws again).

    Example:
        >>> from streamtune.config import ParamSpec
        >>> m = pbt_mutations({"act": ParamSpec(type="choice", values=["relu", "tanh"]),
        ...                    "lr": ParamSpec(type="loguniform", low=0.01, high=0.1)})
        >>> m["act"], type(m["lr"]).__name__
        (['relu', 'tanh'], 'Float')
    """
    domains = to_tune_space(space)
    return {name: list(p.values or []) if p.type == "choice" else domains[name] for name, p in space.items()}


class ClipToSpace:
    """PBT's ``custom_explore_fn``: a perturbed value back within its dimension's ``low``..``high`` (Tune's PBT
    multiplies by 1.2 without a bound, so an lr at ``high`` or a dropout of 0.9 would leave the space). A class,
    so Tune can pickle the scheduler with it.

    Example:
        >>> from streamtune.config import ParamSpec
        >>> clip = ClipToSpace({"dropout": ParamSpec(type="uniform", low=0.0, high=0.9),
        ...                     "units": ParamSpec(type="int", low=8, high=64)})
        >>> clip({"dropout": 1.08, "units": 77, "other": 5})
        {'dropout': 0.9, 'units': 64, 'other': 5}
    """

    def __init__(self, space: Mapping[str, ParamSpec]) -> None:
        self.bounds = {name: (float(p.low or 0.0), float(p.high or 0.0), p.type == "int")
                       for name, p in space.items() if p.type != "choice"}

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        out = dict(config)
        for name, (low, high, whole) in self.bounds.items():
            if isinstance(out.get(name), (int, float)):
                value = min(max(float(out[name]), low), high)
                out[name] = int(round(value)) if whole else value
        return out
