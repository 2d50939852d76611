"""Which earlier windows a run trains on beside its own, per the spec's ``dataset.training`` policy.

The controller picks them from the registry when it submits a run, and hands them to the sweep job in the
request (:class:`~streamtune.sweeps.schema.TrainingWindow`), so the job reads the files of all of them as one
Arrow dataset and the lineage records exactly which windows, files and offsets were read.

Earlier windows are the spec's trigger windows stored before this run that name data files, except those whose
data gate failed (their rows were refused) and those whose files are all already taken. Manual and replay runs
(which name the command that asked for them) are not windows: they re-read data already read. ``sliding``
keeps the last ``windows`` windows (this run's included) and/or those stored within ``span`` seconds of this
run; ``expanding`` keeps every one.

Example:
    >>> from streamtune.config.jobspec import TrainingDataSpec
    >>> from streamtune.registry.records import RunRecord
    >>> runs = [RunRecord(run_id=f"r{i}", spec_name="s", dataset="d", uris=[f"/d/{i}.parquet"], num_rows=10,
    ...                   created_at=100.0 * i) for i in range(5)]
    >>> [w.run_id for w in pick_windows(TrainingDataSpec(policy="sliding", windows=3), runs[4], runs[:4])]
    ['r2', 'r3']
    >>> [w.run_id for w in pick_windows(TrainingDataSpec(policy="sliding", span=150), runs[4], runs[:4])]
    ['r3']
    >>> len(pick_windows(TrainingDataSpec(policy="expanding"), runs[4], runs[:4]))
    4
    >>> pick_windows(TrainingDataSpec(), runs[4], runs[:4])
    []
"""

from __future__ import annotations

from collections.abc import Iterable

from streamtune.config.jobspec import JobSpec, TrainingDataSpec
from streamtune.registry.base import Registry
from streamtune.registry.records import RunRecord
from streamtune.sweeps.schema import TrainingWindow

__all__ = ["MAX_HISTORY_RUNS", "pick_windows", "training_windows"]

MAX_HISTORY_RUNS = 100_000
"""Most earlier runs read from the registry for an ``expanding`` policy."""
_QUEUE_MARGIN = 1000
"""Runs newer than the one submitted (queued windows) that a ``windows``-only sliding read may have to skip."""


def _data_gate_failed(run: RunRecord) -> bool:
    gate = run.gate or {}
    return "data_gate" in gate and gate.get("passed") is False


def pick_windows(policy: TrainingDataSpec, run: RunRecord, earlier: Iterable[RunRecord]) -> list[TrainingWindow]:
    """The windows of ``earlier`` (any order) that ``run`` trains on beside its own, oldest first."""
    if policy.policy == "window":
        return []
    taken = set(run.uris)
    candidates = sorted((r for r in earlier if r.run_id != run.run_id and r.uris and r.created_at <= run.created_at
                         and r.command_id is None and not _data_gate_failed(r)),
                        key=lambda r: (r.created_at, r.run_id), reverse=True)
    picked: list[TrainingWindow] = []
    for r in candidates:  # newest first, so "the last N windows" counts from this run back
        if policy.policy == "sliding":
            if policy.windows is not None and len(picked) + 1 >= policy.windows:
                break
            if policy.span is not None and run.created_at - r.created_at > policy.span:
                break
        if set(r.uris) <= taken:
            continue
        taken.update(r.uris)
        picked.append(TrainingWindow(run_id=r.run_id, uris=list(r.uris), offsets=dict(r.offsets),
                                     num_rows=r.num_rows, created_at=r.created_at))
    return picked[::-1]


def training_windows(registry: Registry, spec: JobSpec, run: RunRecord) -> list[TrainingWindow]:
    """The earlier windows ``run`` trains on under ``spec.dataset.training``, read from the registry."""
    policy = spec.dataset.training
    if policy.policy == "window":
        return []
    only_count = policy.policy == "sliding" and policy.windows is not None and policy.span is None
    limit = policy.windows + _QUEUE_MARGIN if only_count and policy.windows else MAX_HISTORY_RUNS
    return pick_windows(policy, run, registry.list_runs(spec.name, limit=limit))
