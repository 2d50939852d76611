"""Translate a JobSpec search space into Ray Tune distributions, and build the Optuna searcher."""

from __future__ import annotations

import hashlib
from typing import Any

from streamtune.config.jobspec import ParamSpec, SweepSpec
from streamtune.errors import ConfigError


def to_tune_space(space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Map each :class:`ParamSpec` to a ``ray.tune`` sampler.

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


def make_searcher(spec: SweepSpec, seed: int | None = None) -> Any:
    """OptunaSearch with the spec's sampler, limited to ``max_concurrent`` trials at once."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    sampler: optuna.samplers.BaseSampler
    if spec.search == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    elif spec.search == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError('Got "cmaes" for sweep.search; it needs the cmaes package (pip install cmaes)') from None
        sampler = optuna.samplers.CmaEsSampler(seed=seed)
    searcher = OptunaSearch(metric=spec.metric, mode=spec.mode, sampler=sampler)
    return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)


def make_scheduler(spec: SweepSpec) -> Any:
    """ASHA (prunes on ``training_iteration``) or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.scheduler == "fifo":
        return FIFOScheduler()
    # max_t + 1: ASHA stops a trial when it reaches max_t, which would cut it off before the job's
    # save_model() after its final report. Pruning happens at the rungs below max_t as usual.
    return ASHAScheduler(time_attr="training_iteration", max_t=spec.max_t + 1, grace_period=spec.grace_period)
