"""Resume a sweep whose driver died: the retried attempt restores the Tune experiment, searcher state included.

Each attempt of a run is a Ray Job of its own with the same ``out_uri``, and Tune keeps the run's experiment in
``<out_uri>/tune`` (:func:`experiment_uri`): ``tuner.pkl`` from the first attempt, then the experiment state
(every trial's status, config and last result), the searcher's state (the ConcurrencyLimiter's and OptunaSearch's,
whose pickled Optuna study holds every trial told so far and the sampler's random state) and the callbacks'
states, saved by Tune at most every :func:`checkpoint_period_s` (``TUNE_GLOBAL_CHECKPOINT_S``: 2 ms per planned
trial, at most 10 s) at the end of a step of its loop and uploaded to the store in the background.

When the controller retries an attempt whose driver died without writing ``error.json`` (killed, out of memory,
its node or the Ray head lost), it sets ``SweepRequest.resume``, and the sweep restores that experiment with
``Tuner.restore`` (:func:`restore_tuner`) instead of starting a new one:

- trials that had ended keep their results and models and are not run again; trials that failed stay failed
  (``resume_errored=False, restart_errored=False``): running one again would need a trial id the restored
  searcher never issued (Tune's restart gives it a new one, which OptunaSearch cannot tell a result for) or one
  it has already closed (a resumed id's new result would be ignored), and failed trials are retried within an
  attempt by Tune's own failure handling, not by the run's retries;
- trials that were running or waiting start again from scratch (``resume_unfinished=True``; the jobs do not
  checkpoint), with the params the searcher gave them and the same trial id;
- the searcher goes on from its saved state: it has been told the ended trials' results, its sampler continues
  its random sequence, and the number of trials stays ``sweep.num_samples``.

An attempt whose driver raised (it wrote ``error.json``) is retried from scratch, as before: its error is what
the retry is for. A driver killed before Tune saved any state (``tuner.pkl`` only) is also started afresh. The
scheduler's state (ASHA's rungs) is not part of Tune's saved state: a resumed sweep's scheduler knows only the
trials it sees report. A trial that ended within one checkpoint period before the kill, before the state that
records it reached the store, runs again; so does one whose state upload the kill cut short on a local folder (an
object store replaces objects whole).

Example:
    >>> experiment_uri("s3://b/sales/r-1")
    's3://b/sales/r-1/tune'
    >>> resume_summary([("t_00000", 1, 0), ("t_00001", 1, 0), ("t_00002", 2, 1), ("t_00003", 2, 0)], attempt=2)
    SweepResume(attempt=2, from_attempts=[1], kept_trials=['t_00000', 't_00001'], rerun_trials=['t_00002'])
    >>> resume_summary([("t_00000", 1, 0)], attempt=1) is None
    True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from streamtune.sweeps.schema import SweepResume

__all__ = ["CHECKPOINT_ENV", "EXPERIMENT", "checkpoint_period_s", "experiment_uri", "restore_tuner",
           "resume_summary", "saved_ended", "saved_statuses", "set_checkpoint_period"]

EXPERIMENT = "tune"
"""The Tune experiment's folder name under the run's ``out_uri``."""
CHECKPOINT_ENV = "TUNE_GLOBAL_CHECKPOINT_S"
"""Tune's experiment checkpoint period, read when a Tune run starts (its default, ``auto``, waits at least 10 s
between saves, so a driver killed within 10 s of a trial's end would run that trial again)."""
CHECKPOINT_S_PER_TRIAL = 0.002
CHECKPOINT_MAX_S = 10.0
_PRESET = os.environ.get(CHECKPOINT_ENV)

log = logging.getLogger(__name__)


def checkpoint_period_s(planned_trials: int) -> float:
    """Seconds between Tune's saves of the experiment state for a sweep of ``planned_trials``: 2 ms per trial, at
    most 10 s. The state grows with the trials (about 10 kB each) and is written and uploaded whole at each save,
    so saving after every step costs 2.7x per trial at 200 trivial trials, while this period keeps the cost to a few
    percent at any size (benchmarks/bench_resume.py) and a trial that ended more than one period (plus the upload)
    before a kill is never run again: 8 ms for 4 trials, 0.4 s for 200, 4 s for 2,000.

    Example:
        >>> checkpoint_period_s(4), checkpoint_period_s(200), checkpoint_period_s(100_000)
        (0.008, 0.4, 10.0)
    """
    return round(min(CHECKPOINT_MAX_S, CHECKPOINT_S_PER_TRIAL * max(1, planned_trials)), 3)


def set_checkpoint_period(planned_trials: int) -> str:
    """Set ``TUNE_GLOBAL_CHECKPOINT_S`` for the next Tune run (:func:`checkpoint_period_s`), unless the process
    started with it set; return the value it runs with."""
    value = _PRESET or f"{checkpoint_period_s(planned_trials):g}"
    os.environ[CHECKPOINT_ENV] = value
    return value


def experiment_uri(out_uri: str) -> str:
    """Where the run's Tune experiment lives (``RunConfig(name="tune", storage_path=out_uri)``)."""
    return f"{out_uri.rstrip('/')}/{EXPERIMENT}"


def restore_tuner(out_uri: str, trainable: Any) -> Any | None:
    """``Tuner.restore`` of the run's experiment, or None when there is none that saved its state.

    The restored Tuner runs with the searcher, scheduler, stopper and callbacks pickled in ``tuner.pkl`` by the
    first attempt; the runner's callbacks and the budget bind to this process's live ones when unpickled
    (``__reduce__``), and the searcher's saved state is loaded over its pickled copy when ``fit`` starts.
    """
    from ray import tune

    path = experiment_uri(out_uri)
    if not tune.Tuner.can_restore(path):
        return None
    with _quiet_analysis():
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    try:
        tuner.get_results()  # the experiment state Tune saved: missing when the driver died before the first save
    except RuntimeError:
        log.warning("%s holds tuner.pkl but no experiment state: the sweep starts afresh", path)
        return None
    log.info("resuming the sweep's Tune experiment at %s", path)
    return tuner


def saved_statuses(out_uri: str) -> dict[str, str]:
    """Each trial's status in the newest experiment state in the store (``{}`` if none can be read yet)."""
    from ray import tune

    try:
        with _quiet_analysis():
            analysis = tune.ExperimentAnalysis(experiment_uri(out_uri))
    except Exception:  # not saved yet, or read while the upload rewrites it
        return {}
    return {t.trial_id: str(t.status) for t in analysis.trials}


def saved_ended(out_uri: str, trial_ids: Iterable[str]) -> bool:
    """Whether the stored experiment state records these trials as ended (it is uploaded in the background after
    each step, so a caller asks again after a later step)."""
    statuses = saved_statuses(out_uri)
    return all(statuses.get(t) in ("TERMINATED", "ERROR") for t in trial_ids)


def resume_summary(trials: Iterable[tuple[str, int, int]], *, attempt: int) -> SweepResume | None:
    """What ``attempt`` resumed, from each trial's (id, attempt that saw it end, reruns); None if it resumed
    nothing (the first attempt, or a retry that started afresh)."""
    rows = sorted(trials)
    kept = [(t, a) for t, a, _ in rows if a < attempt]
    rerun = [t for t, a, n in rows if a == attempt and n > 0]
    if attempt < 2 or not (kept or rerun):
        return None
    return SweepResume(attempt=attempt, from_attempts=sorted({a for _, a in kept}),
                       kept_trials=[t for t, _ in kept], rerun_trials=rerun)


class _quiet_analysis:
    """Hush Tune's "Failed to fetch metrics" warnings: its result files are off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS),
    and the trials' results live in the experiment state, which is what is read here."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
