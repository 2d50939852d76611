"""A sweep's progress while it runs: trials done, running, pruned and failed, each one's curve, the best so far.

The sweep job's Tune callback feeds a :class:`ProgressWriter`, which writes ``progress.json`` beside the run's
request at most once per ``every_s`` seconds (results and ended trials alike) and once at the end (a small file,
written whole: readers never see half of it). The best trial is kept as results come (the best last value of
the ended trials, compared with the running ones'), so a report costs the same at 20 trials as at 2,000. The
controller never writes it; the status page, ``Client.progress(run_id)``, ``Client.wait(on_progress=...)`` and
``streamtune runs --watch`` read it. Curves keep the sweep metric of every report, up to ``MAX_POINTS`` per
trial (then every other point is dropped, so a long trial keeps its shape).

Example:
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> w = ProgressWriter(out, metric="rmse", mode="min", planned=3, max_t=4, every_s=0)
    >>> w.result("t1", 1, {"rmse": 5.0}); w.result("t1", 2, {"rmse": 3.0}); w.result("t2", 1, {"rmse": 6.0})
    >>> w.ended("t2", 1, error=False); w.ended("t1", 4, error=False)
    >>> p = read_progress(out)
    >>> p.counts(), p.best_trial, p.best
    ({'running': 0, 'done': 1, 'pruned': 1, 'error': 0}, 't1', 3.0)
    >>> p.trials[0].curve
    [5.0, 3.0]
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from streamtune.artifacts.store import ArtifactStore

__all__ = ["MAX_POINTS", "PROGRESS", "ProgressWriter", "SweepProgress", "TrialProgress", "progress_uri",
           "read_progress", "run_out_uri"]

PROGRESS = "progress.json"
"""File name of a run's sweep progress, beside ``request.json``."""
MAX_POINTS = 200
"""Most curve points kept per trial."""

TrialState = Literal["running", "done", "pruned", "error"]


class TrialProgress(BaseModel):
    """One trial as the sweep last saw it."""

    trial_id: str = Field(description="Tune trial id.")
    state: TrialState = Field(description="running; done (ran to max_t); pruned (stopped early by the "
                              "scheduler); error (raised).")
    iterations: int = Field(0, description="Reports so far.")
    value: float | None = Field(None, description="The sweep metric at the last report.")
    curve: list[float] = Field(default_factory=list, description="The sweep metric at each report (thinned).")


class SweepProgress(BaseModel):
    """A sweep's progress, as ``progress.json`` holds it."""

    metric: str = Field(description="The sweep metric.")
    mode: Literal["min", "max"] = Field(description="Whether lower or higher is better.")
    planned: int = Field(description="Trials the sweep will run (sweep.num_samples).")
    trials: list[TrialProgress] = Field(default_factory=list, description="Every trial started, in start order.")
    best_trial: str | None = Field(None, description="The trial with the best last value so far.")
    best: float | None = Field(None, description="Its value.")
    finished: bool = Field(False, description="Whether the sweep has ended.")
    updated_at: float = Field(default_factory=time.time, description="Unix time of this snapshot.")

    def counts(self) -> dict[str, int]:
        """Trials per state."""
        out = {"running": 0, "done": 0, "pruned": 0, "error": 0}
        for t in self.trials:
            out[t.state] += 1
        return out


def run_out_uri(store: ArtifactStore, spec_name: str, run_id: str) -> str:
    """The run's folder in the artifact store: its request, Tune state, trial models, progress and result.

    Example:
        >>> run_out_uri(ArtifactStore("s3://b/st"), "sales", "r-1")
        's3://b/st/sales/r-1'
    """
    return store.join(spec_name, run_id)


def progress_uri(out_uri: str) -> str:
    """Where a run's ``progress.json`` lives.

    Example:
        >>> progress_uri("s3://b/sales/r-1")
        's3://b/sales/r-1/progress.json'
    """
    return f"{out_uri.rstrip('/')}/{PROGRESS}"


def read_progress(out_uri: str) -> SweepProgress | None:
    """The run's latest progress, or None if the sweep has not written any (yet)."""
    uri = progress_uri(out_uri)
    store = ArtifactStore(uri)
    if not store.exists(uri):
        return None
    return SweepProgress.model_validate_json(store.get_text(uri))


class ProgressWriter:
    """Collects trial results in the sweep job and writes ``progress.json`` now and then (never raises)."""

    def __init__(self, out_uri: str, *, metric: str, mode: Literal["min", "max"], planned: int, max_t: int,
                 every_s: float = 1.0) -> None:
        self.uri = progress_uri(out_uri)
        self.max_t = max_t
        self.every_s = every_s
        self.progress = SweepProgress(metric=metric, mode=mode, planned=planned)
        self._trials: dict[str, TrialProgress] = {}
        self._running: dict[str, TrialProgress] = {}
        self._ended_best: TrialProgress | None = None
        self._written = 0.0
        self.failures = 0

    def _trial(self, trial_id: str) -> TrialProgress:
        if trial_id not in self._trials:
            trial = TrialProgress(trial_id=trial_id, state="running")
            self._trials[trial_id] = self._running[trial_id] = trial
            self.progress.trials.append(trial)
        return self._trials[trial_id]

    def result(self, trial_id: str, iteration: int, metrics: Mapping[str, Any]) -> None:
        """A trial reported."""
        trial = self._trial(trial_id)
        trial.iterations = max(trial.iterations, int(iteration))
        value = metrics.get(self.progress.metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            trial.value = float(value)
            trial.curve.append(round(float(value), 6))
            if len(trial.curve) > MAX_POINTS:
                trial.curve = trial.curve[::2]
            self._best()
        self._flush()

    def ended(self, trial_id: str, iterations: int, *, error: bool) -> None:
        """A trial ended: ran out its steps, was stopped early by the scheduler, or raised."""
        trial = self._trial(trial_id)
        trial.iterations = max(trial.iterations, int(iterations))
        trial.state = "error" if error else ("done" if trial.iterations >= self.max_t else "pruned")
        self._running.pop(trial_id, None)
        if trial.value is not None and (self._ended_best is None or self._better(trial, self._ended_best)):
            self._ended_best = trial
        self._best()
        self._flush()

    def finish(self) -> None:
        """The sweep ended."""
        self.progress.finished = True
        self._flush(force=True)

    def _better(self, a: TrialProgress, b: TrialProgress) -> bool:
        assert a.value is not None and b.value is not None
        return a.value < b.value if self.progress.mode == "min" else a.value > b.value

    def _best(self) -> None:
        # An ended trial's last value is final, so the best of them is kept as trials end; only the running
        # trials (at most the sweep's concurrency) are compared on each report: O(running), not O(trials).
        best = self._ended_best
        for t in self._running.values():
            if t.value is not None and (best is None or self._better(t, best)):
                best = t
        if best is not None:
            self.progress.best_trial, self.progress.best = best.trial_id, best.value

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < self.every_s:
            return
        self._written = now
        self.progress.updated_at = time.time()
        try:
            ArtifactStore(self.uri).put_text(self.uri, self.progress.model_dump_json())
        except Exception:  # noqa: BLE001 -- progress is best effort; the sweep goes on without it
            self.failures += 1
