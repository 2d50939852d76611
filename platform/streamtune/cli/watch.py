"""``streamtune runs --watch RUN``: follow a run until it ends, with its sweep's progress.

Example:
    >>> from streamtune.sweeps.progress import SweepProgress, TrialProgress
    >>> p = SweepProgress(metric="rmse", mode="min", planned=6, best_trial="t2", best=2.71,
    ...                   trials=[TrialProgress(trial_id="t1", state="pruned", iterations=2),
    ...                           TrialProgress(trial_id="t2", state="running", iterations=4)])
    >>> progress_line(p)
    'trials 2/6: 1 running, 0 done, 1 pruned, 0 failed; best rmse 2.71 (t2)'
"""

from __future__ import annotations

import json

from rich.console import Console

from streamtune.control.base import ControlPlane
from streamtune.registry.records import RunRecord
from streamtune.sweeps.progress import SweepProgress

__all__ = ["progress_line", "watch_run"]


def progress_line(progress: SweepProgress) -> str:
    """One line of a sweep's progress."""
    c = progress.counts()
    best = "none yet" if progress.best is None else f"{progress.metric} {progress.best:.4g} ({progress.best_trial})"
    return (f"trials {len(progress.trials)}/{progress.planned}: {c['running']} running, {c['done']} done, "
            f"{c['pruned']} pruned, {c['error']} failed; best {best}")


def watch_run(console: Console, client: ControlPlane, run_id: str, *, as_json: bool = False,
              timeout_s: float = 3600) -> RunRecord:
    """Print the run's status changes and sweep progress until it ends; return the ended run."""

    def changed(run: RunRecord) -> None:
        if as_json:
            print(json.dumps({"run_id": run.run_id, "status": run.status.value}), flush=True)
        else:
            console.print(f"{run.run_id}: [bold]{run.status.value}[/]")

    def progressed(run: RunRecord, progress: SweepProgress) -> None:
        if as_json:
            print(json.dumps({"run_id": run.run_id, "progress": progress.model_dump(mode="json",
                                                                                  exclude={"trials"}),
                              "counts": progress.counts()}), flush=True)
        else:
            console.print(f"{run.run_id}: {progress_line(progress)}")

    run = client.wait(run_id, timeout_s=timeout_s, on_change=changed, on_progress=progressed)
    if not as_json:
        gate = (run.gate or {}).get("numbers") or {}
        console.print(f"{run.run_id}: ended [bold]{run.status.value}[/]"
                      + (f", version {run.model_version}" if run.model_version else "")
                      + (f", holdout {gate.get('metric')} {gate.get('challenger')}" if gate else "")
                      + (f" - {run.error}" if run.error else ""))
    return run
