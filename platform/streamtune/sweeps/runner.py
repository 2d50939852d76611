"""Run one sweep with Ray Tune: OptunaSearch proposes (``sweep.search``), a scheduler prunes
(``sweep.scheduler``), each trial runs the user's Job; then pick the winner (and, multi-objective, the Pareto
front)."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from streamtune import faults
from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec, ObjectiveSpec, ResourcesSpec, SweepSpec
from streamtune.errors import SweepError
from streamtune.job import TrainContext, load_job_class
from streamtune.registry.manifest import MANIFEST, manifest_digest, write_manifest
from streamtune.sweeps.budget import SweepBudget
from streamtune.sweeps.distributed import WORKERS_KEY, WorkerTask, run_workers
from streamtune.sweeps.progress import ProgressWriter
from streamtune.sweeps.resources import lookahead, trial_resources
from streamtune.sweeps.resume import restore_tuner, saved_ended, set_checkpoint_period
from streamtune.sweeps.schema import TrialSummary
from streamtune.sweeps.space import checkpoint_period, make_scheduler, make_searcher, pbt_population, to_tune_space

# Tune's default CSV/JSON/TensorBoard loggers cost ~50 ms per trial on 2 cores; results live in the registry.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

NODE_KEY = "streamtune_node_id"
"""The result key a trial reports its Ray node id under; :class:`TrialSummary` keeps it as ``node_id``."""
COPIED_FROM_KEY = "streamtune_copied_from"
"""The result key naming the other trial whose checkpoint this trial last went on from (a PBT exploit);
:class:`TrialSummary` keeps it as ``copied_from``."""
COPIED_AT_KEY = "streamtune_copied_at"
"""The result key of the report step that checkpoint was kept at; :class:`TrialSummary` keeps it as ``copied_at``."""
CHECKPOINTS_KEPT = 4
"""Checkpoints Tune keeps per trial (the oldest go): a trial keeps one every ``grace_period`` steps under PBT, and
a bottom trial copies a top trial's latest, so a few bound the disk with room for a copy still being made."""
KILL_AFTER_TRIAL = "sweep.after_trial"
"""The sweep driver's kill point (:mod:`streamtune.faults`): a trial completed and Tune's stored state says so."""


class TuneContext(TrainContext):
    """The :class:`TrainContext` a trial sees inside Ray Tune.

    Checkpoints: :meth:`report_checkpoint` keeps one (``ray.tune.report(..., checkpoint=...)``) at the steps
    :func:`wants_checkpoint` picks for ``checkpoint_every`` (:func:`~streamtune.sweeps.space.checkpoint_period`)
    and ``last_step`` (``max_t``), with the trial id, the step and the last copy's origin in its metadata.
    :meth:`restored_checkpoint` is the one Tune gave the trial at its start (``ray.tune.get_checkpoint()``: its own
    after a pause, another trial's after a PBT exploit), copied into a local folder. Once the job took it, every
    report says which other trial's checkpoint the model last came from and at which step (:data:`COPIED_FROM_KEY`,
    :data:`COPIED_AT_KEY`): the checkpoint's writer for a copy, the origin its metadata carries for its own.
    """

    def __init__(self, train: pa.Table, valid: pa.Table, label: str, features: list[str], out_uri: str, *,
                 checkpoint_every: int = 0, last_step: int = 0) -> None:
        import ray
        from ray import tune

        self.train, self.valid, self.label, self.features = train, valid, label, features
        self.out_uri = out_uri
        self.saved: str | None = None
        self.node_id = ray.get_runtime_context().get_node_id()
        self.checkpoint_every, self.last_step = checkpoint_every, last_step
        self.trial_id = tune.get_context().get_trial_id()
        self._checkpoint = tune.get_checkpoint()  # read now: a reported checkpoint replaces it in Tune's session
        meta = self._checkpoint.get_metadata() if self._checkpoint is not None else {}
        self.step = int(meta.get("step", 0))  # Tune goes on counting from the checkpoint's step too
        self._origin = _origin(meta, self.trial_id)
        self._restored: Path | None = None

    def report(self, metrics: dict[str, float]) -> None:
        """Report the metrics, with the node this trial runs on (taken out again by the summary)."""
        from ray import tune

        self.step += 1
        tune.report(self._tagged(metrics))

    def report_checkpoint(self, metrics: dict[str, float], writer: Callable[[str], None]) -> None:
        """Report the metrics; at a step :func:`wants_checkpoint` picks, with a checkpoint ``writer`` writes."""
        from ray import tune

        self.step += 1
        if not wants_checkpoint(self.step, self.checkpoint_every, self.last_step):
            tune.report(self._tagged(metrics))
            return
        with tempfile.TemporaryDirectory(prefix="streamtune-checkpoint-") as scratch:
            writer(scratch)
            checkpoint = tune.Checkpoint.from_directory(scratch)
            checkpoint.set_metadata({"trial_id": self.trial_id, "step": self.step, **self._taken()})
            tune.report(self._tagged(metrics), checkpoint=checkpoint)  # copied to the run's storage here

    def restored_checkpoint(self) -> Path | None:
        """The checkpoint Tune restored this trial from, in a local folder (removed when the trial ends)."""
        if self._checkpoint is not None and self._restored is None:
            self._restored = Path(self._checkpoint.to_directory(tempfile.mkdtemp(prefix="streamtune-restored-")))
        return self._restored

    def close(self) -> None:
        """Remove the local copy of the restored checkpoint, if any."""
        if self._restored is not None:
            shutil.rmtree(self._restored, ignore_errors=True)

    def _taken(self) -> dict[str, Any]:
        """The origin of the model being trained: the restored checkpoint's, once the job took it."""
        return self._origin if self._restored is not None else {}

    def _tagged(self, metrics: dict[str, float]) -> dict[str, Any]:
        return {**metrics, NODE_KEY: self.node_id, **self._taken()}

    def save_model(self, writer: Callable[[str], None]) -> None:
        from ray import tune

        uri = trial_uri(self.out_uri, tune.get_context().get_trial_id())
        with tempfile.TemporaryDirectory(prefix="streamtune-trial-") as scratch:
            writer(scratch)
            write_manifest(scratch)
            self.saved = ArtifactStore(uri).upload_dir(scratch, uri)


def _origin(meta: Mapping[str, Any], trial_id: str) -> dict[str, Any]:
    """Where a trial restored from a checkpoint with metadata ``meta`` last copied another trial's model: that
    checkpoint's writer and step when another trial wrote it (an exploit), else the origin it carries ({} for none).

    Example:
        >>> _origin({"trial_id": "b", "step": 4}, "a")
        {'streamtune_copied_from': 'b', 'streamtune_copied_at': 4}
        >>> _origin({"trial_id": "a", "step": 6, "streamtune_copied_from": "b", "streamtune_copied_at": 4}, "a")
        {'streamtune_copied_from': 'b', 'streamtune_copied_at': 4}
        >>> _origin({"trial_id": "a", "step": 2}, "a"), _origin({}, "a")
        ({}, {})
    """
    writer = meta.get("trial_id")
    if writer is not None and writer != trial_id:
        return {COPIED_FROM_KEY: str(writer), COPIED_AT_KEY: int(meta.get("step", 0))}
    if meta.get(COPIED_FROM_KEY):
        return {COPIED_FROM_KEY: str(meta[COPIED_FROM_KEY]), COPIED_AT_KEY: int(meta.get(COPIED_AT_KEY, 0))}
    return {}


def wants_checkpoint(step: int, every: int, last_step: int) -> bool:
    """Whether report ``step`` (1, 2...) keeps a checkpoint: every ``every`` steps (0: never), except from the
    trial's ``last_step`` on (its model is saved right after; under PBT a trial without a checkpoint at its last
    step is never copied there, so no trial resumes with no step left to train).

    Example:
        >>> [s for s in range(1, 9) if wants_checkpoint(s, 2, 6)], wants_checkpoint(3, 0, 6)
        ([2, 4], False)
    """
    return every > 0 and step % every == 0 and step < last_step


def trial_uri(out_uri: str, trial_id: str) -> str:
    """Where a trial's model goes in the artifact store.

    Example:
        >>> trial_uri("s3://b/sales/r-1", "a_0001")
        's3://b/sales/r-1/trials/a_0001'
    """
    return f"{out_uri.rstrip('/')}/trials/{trial_id}"


def _trial(config: dict[str, Any], *, entrypoint: str, fixed: dict[str, Any], train: pa.Table,
           valid: pa.Table, label: str, features: list[str], out_uri: str,
           resources: ResourcesSpec | None = None, checkpoint_every: int = 0, last_step: int = 0) -> None:
    if resources is not None and resources.workers > 1:  # a Ray Train run of several workers (sweeps/distributed.py)
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
        task = WorkerTask(entrypoint=entrypoint, config={**fixed, **config}, train=train, valid=valid, label=label,
                          features=features, uri=trial_uri(out_uri, trial_id), node_key=NODE_KEY)
        run_workers(task, resources, f"{out_uri.rstrip('/')}/train", trial_id)
        return
    job = load_job_class(entrypoint)()
    ctx = TuneContext(train, valid, label, features, out_uri, checkpoint_every=checkpoint_every, last_step=last_step)
    try:
        job.train({**fixed, **config}, ctx)
    finally:
        ctx.close()


def _named_trial(out_uri: str) -> Callable[..., None]:
    """:func:`_trial` under a name of this sweep's own. Tune registers a trainable by its name for the whole Ray
    job, so two sweeps run at once by one driver (tests, benchmarks) would otherwise run each other's trials.

    Example:
        >>> _named_trial("s3://b/sales/r-1").__name__ == _named_trial("s3://b/sales/r-1").__name__
        True
        >>> _named_trial("s3://b/sales/r-1").__name__ != _named_trial("s3://b/sales/r-2").__name__
        True
    """
    def trial(config: dict[str, Any], **kwargs: Any) -> None:
        _trial(config, **kwargs)

    trial.__name__ = trial.__qualname__ = "trial_" + hashlib.sha256(out_uri.encode()).hexdigest()[:10]
    return trial


def _lookahead(sweep: SweepSpec) -> int:
    """One trial waiting for resources when the cluster runs no more than ``max_concurrent`` trials anyway
    (:func:`streamtune.sweeps.resources.lookahead`), so Tune reuses trial actors instead of restarting them."""
    from streamtune.sweeps.failures import alive_nodes

    return lookahead(sweep.max_concurrent, sweep.resources, alive_nodes())


def run_tune(spec: JobSpec, train: pa.Table, valid: pa.Table, features: list[str], out_uri: str,
             *, seed: int | None = None, warm_start: Sequence[Mapping[str, Any]] = (),
             budget: SweepBudget | None = None, attempt: int = 1, resume: bool = False) -> list[TrialSummary]:
    """Run the sweep and summarise every trial; ``warm_start`` points are evaluated first
    (:func:`~streamtune.sweeps.space.warm_points`). ``budget`` (default: the spec's, keyed by ``out_uri``) stops
    the sweep once ``sweep.time_budget``, ``cpu_hours`` or ``gpu_hours`` is spent and counts what was spent
    (:meth:`~streamtune.sweeps.budget.SweepBudget.spent`). With ``resume`` (a retried ``attempt`` whose earlier
    driver died) it restores the Tune experiment already in ``out_uri``, searcher state included, if there is one
    (:mod:`streamtune.sweeps.resume`); each summary says which attempt saw its trial end.

    Raises:
        SweepError: no trial produced a model.
    """
    from ray import tune

    sweep = spec.sweep
    trainable = tune.with_parameters(
        _named_trial(out_uri), entrypoint=spec.job.entrypoint, fixed=dict(spec.job.params), train=train,
        valid=valid, label=spec.dataset.label, features=features, out_uri=out_uri, resources=sweep.resources,
        checkpoint_every=checkpoint_period(sweep), last_step=sweep.max_t,
    )
    trainable = tune.with_resources(trainable, trial_resources(sweep.resources))
    progress = ProgressWriter(out_uri, metric=sweep.metric, mode=sweep.mode, planned=sweep.planned_trials,
                              max_t=sweep.max_t)
    collector = _Collector(progress, key=out_uri, attempt=attempt)
    budget = budget if budget is not None else SweepBudget.from_spec(sweep, key=out_uri)
    # define-by-run OptunaSearch (warm-start points first); None for PBT, which samples param_space
    searcher = make_searcher(sweep, seed, warm_start, lookahead=_lookahead(sweep))
    set_checkpoint_period(sweep.planned_trials)  # how often Tune saves the state a retried attempt resumes from
    restored = restore_tuner(out_uri, trainable) if resume else None  # after the live collector and budget
    tuner = restored or tune.Tuner(
        trainable,
        param_space=to_tune_space(sweep.space) if searcher is None else None,
        tune_config=tune.TuneConfig(
            metric=sweep.metric, mode=sweep.mode, num_samples=sweep.planned_trials,
            search_alg=searcher if searcher is not None else pbt_population(sweep, seed),  # PBT: seeded draws
            scheduler=make_scheduler(sweep),
            reuse_actors=sweep.resources.workers == 1,  # a stopped Train-run trial's actor must go, with its run
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=out_uri, verbose=0, callbacks=[collector, budget.tune_callback()],
            stop=budget.tune_stopper(),  # time_budget, cpu_hours, gpu_hours (sweeps/budget.py)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),  # PBT's (checkpoint_period)
        ),
    )
    tuner.fit()
    budget.finish()
    for trial_id in sorted(budget.cut):  # stopped by a budget: ended early in progress.json, not running
        progress.ended(trial_id, 0, error=False)
    progress.finish()
    return [_summary(t, out_uri, attempt=collector.ended_in.get(t.trial_id, attempt),
                     reruns=collector.reruns.get(t.trial_id, 0)) for t in collector.trials.values()]


_LIVE_COLLECTORS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
"""This process's collector per run folder, which a collector unpickled by Tune (a restored experiment's) binds to."""


def _live_collector(key: str) -> Any:
    """Unpickle a collector: this process's live one for the run's folder, else a new one that writes no progress."""
    live = _LIVE_COLLECTORS.get(key)
    return live if live is not None else _Collector(None, key=key)


class _Collector:
    """Keeps each trial's last result in memory, so Tune's file loggers can stay off, and feeds the sweep's
    ``progress.json`` (:class:`~streamtune.sweeps.progress.ProgressWriter`) when given one.

    With ``key`` (the run's folder) it is the collector of that run in this process: a copy Tune unpickles from
    ``tuner.pkl`` when a retried attempt restores the experiment (:mod:`streamtune.sweeps.resume`) binds to it.
    Its state, checkpointed with the experiment, says which ``attempt`` saw each trial end and which trials had
    started; restored, it adds the trials that had ended to :attr:`trials` and the progress, and counts the
    unfinished ones that had started as run again. In the driver of attempt N, the kill point
    ``sweep.after_trial@aN`` (:mod:`streamtune.faults`) fires once a trial completed in this attempt and the
    experiment state in the store records it.
    """

    def __new__(cls, progress: ProgressWriter | None = None, *, key: str | None = None, attempt: int = 1) -> Any:
        from ray.tune import Callback

        scope = f"a{attempt}"

        def _iterations(trial: Any) -> int:
            return int((trial.last_result or {}).get("training_iteration", 0))

        class Collector(Callback):
            def __init__(self) -> None:
                self.trials: dict[str, Any] = {}
                self.ended_in: dict[str, int] = {}  # trial id -> the attempt that saw it end
                self.reruns: dict[str, int] = {}  # trial id -> times it started again after an attempt died
                self.started: set[str] = set()
                self.restored = False
                self._kept = False
                self._seen: set[str] = set()  # for the kill point: trials completed in this attempt
                self._pending: list[str] = []  # of those, the ones the store's state does not record yet

            def __reduce_ex__(self, protocol: Any) -> Any:
                if key is None:
                    return super().__reduce_ex__(protocol)
                return _live_collector, (key,)

            def get_state(self) -> dict[str, Any] | None:
                return {"ended_in": dict(self.ended_in), "reruns": dict(self.reruns), "started": sorted(self.started)}

            def set_state(self, state: dict[str, Any]) -> None:
                self.ended_in = {**state.get("ended_in", {}), **self.ended_in}
                self.reruns = {**state.get("reruns", {}), **self.reruns}
                self.started |= set(state.get("started", ()))
                self.restored = True

            def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
                if self.restored and not self._kept:  # the first step of a restored experiment: its trials only
                    self._kept = True
                    for trial in trials:
                        self._restored(trial)

            def on_experiment_end(self, trials: list, **info: Any) -> None:
                self.on_step_begin(0, trials)  # a restored experiment whose trials had all ended runs no step

            def _restored(self, trial: Any) -> None:
                trial_id = trial.trial_id
                if trial.status not in ("TERMINATED", "ERROR"):  # requeued: it runs again from scratch
                    if trial_id in self.started:
                        self.reruns[trial_id] = self.reruns.get(trial_id, 0) + 1
                    return
                self.trials[trial_id] = trial
                self.ended_in.setdefault(trial_id, max(1, attempt - 1))  # (ended before its end was recorded)
                if progress is not None:
                    progress.result(trial_id, _iterations(trial), trial.last_result or {})
                    progress.ended(trial_id, _iterations(trial), error=trial.status == "ERROR")

            def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.started.add(trial.trial_id)

            def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
                self.trials[trial.trial_id] = trial
                if progress is not None:
                    progress.result(trial.trial_id, int(result.get("training_iteration", 0)), result)

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.trials[trial.trial_id] = trial
                self.ended_in[trial.trial_id] = attempt
                if progress is not None:
                    progress.ended(trial.trial_id, _iterations(trial), error=False)

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.trials[trial.trial_id] = trial
                self.ended_in[trial.trial_id] = attempt
                if progress is not None:
                    progress.ended(trial.trial_id, _iterations(trial), error=True)

            def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
                if key is None or not faults.armed(KILL_AFTER_TRIAL, scope=scope):
                    return
                for trial in trials:
                    if (trial.status == "TERMINATED" and self.ended_in.get(trial.trial_id) == attempt
                            and trial.trial_id not in self._seen):
                        self._seen.add(trial.trial_id)
                        self._pending.append(trial.trial_id)
                # a hit once the store's state (uploaded in the background after each step) records the trial
                while self._pending and saved_ended(key, self._pending[:1]):
                    self._pending.pop(0)
                    faults.kill_point(KILL_AFTER_TRIAL, scope=scope)

        collector = Collector()
        if key is not None:
            _LIVE_COLLECTORS[key] = collector
        return collector


def _summary(trial: Any, out_uri: str, *, attempt: int = 1, reruns: int = 0) -> TrialSummary:
    last = trial.last_result or {}
    metrics = {k: v for k, v in last.items() if isinstance(v, (int, float, str)) and k != "config"}
    node = metrics.pop(NODE_KEY, None)
    workers = metrics.pop(WORKERS_KEY, 1)
    copied_from, copied_at = metrics.pop(COPIED_FROM_KEY, None), metrics.pop(COPIED_AT_KEY, None)
    uri = trial_uri(out_uri, trial.trial_id)
    store = ArtifactStore(uri)
    artifact = uri if store.exists(f"{uri}/{MANIFEST}") else None
    digest = manifest_digest(store.get_bytes(f"{uri}/{MANIFEST}")) if artifact else None
    error_file = getattr(trial, "error_file", None)
    error = None
    if error_file:
        text = _error_text(trial, error_file)
        node = str(node) if node else error_node(text) or actor_node(error_actor(text))  # lost before a report
        error = f"{error_headline(text)} (trial {trial.trial_id} on node {node or 'unknown'}{_dead_note(node)}; " \
                f"see {error_file})"
    return TrialSummary(
        trial_id=trial.trial_id, params=dict(trial.config or {}), metrics=metrics,
        iterations=int(metrics.get("training_iteration", 0)), artifact_uri=artifact, manifest_sha256=digest,
        error=error,
        node_id=str(node) if node else None, workers=int(workers), attempt=attempt, reruns=reruns,
        copied_from=str(copied_from) if copied_from else None,
        copied_at=int(copied_at) if copied_from and isinstance(copied_at, (int, float)) else None,
    )


def _error_text(trial: Any, error_file: str) -> str:
    """The trial's error trace as Tune stored it ('' if it cannot be read)."""
    try:
        return str(trial.get_error() or "")
    except Exception:  # the storage may be gone; the local copy may still be there
        try:
            with open(error_file, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def error_headline(text: str, limit: int = 400) -> str:
    """What an error trace says went wrong: from the last line naming an exception (else from the top), without
    Tune's "Failure #" line or Ray's indented ``key: value`` details.

    Example:
        >>> error_headline("Failure # 1\\nTraceback (most recent call last):\\n  File 'x.py'\\n"
        ...                "ValueError: num_leaves must be > 1\\n")
        'ValueError: num_leaves must be > 1'
        >>> error_headline("Failure # 1 (occurred at 2026-11-26_10-21-21)\\n"
        ...                "The actor died unexpectedly.\\n\\tclass_name: ImplicitFunc\\n\\tpid: 15917\\n"
        ...                "The actor died because its node has died. Node Id: cd9e\\n"
        ...                "\\tthe actor's node was terminated unexpectedly\\n")
        "The actor died unexpectedly. The actor died because its node has died. Node Id: cd9e the actor's node was..."
        >>> error_headline("")
        'trial failed (no error trace)'
    """
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not _DETAIL_LINE.match(line) and not line.startswith("Failure # ")]
    if not lines:
        return "trial failed (no error trace)"
    named = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    return " ".join(lines[named[-1] if named else 0:])[:limit]


def error_node(text: str) -> str | None:
    """The node id a Ray error names (an actor that died with its node), if any.

    Example:
        >>> error_node("The actor died because its node has died. Node Id: cd9e7e46")
        'cd9e7e46'
        >>> error_node("ValueError: x") is None
        True
    """
    match = _NODE_ID.search(text)
    return match.group(1) if match else None


def error_actor(text: str) -> str | None:
    """The actor id a Ray error names (an actor that died or became unavailable), if any.

    Example:
        >>> error_actor("The actor 3310c047fd7233da2267108204000000 is unavailable: Socket closed")
        '3310c047fd7233da2267108204000000'
        >>> error_actor("ValueError: x") is None
        True
    """
    match = _ACTOR_ID.search(text)
    return match.group(1) if match else None


def actor_node(actor_id: str | None) -> str | None:
    """The node an actor ran on, from Ray's state API (None if unknown or the API cannot answer).

    A trial whose node is killed can fail with "actor ... is unavailable" before Ray marks the node dead, and
    before the trial's first report named its node; Ray still knows where the actor was placed.
    """
    if not actor_id:
        return None
    try:
        from ray.util.state import get_actor

        state = get_actor(actor_id, timeout=10)
    except Exception:  # no dashboard, or the state API timed out: the node stays unknown
        return None
    return str(state.node_id) if state is not None and state.node_id else None


def _dead_note(node: str | None) -> str:
    """', which has died' when Ray lists the node as dead (the trial was lost with its node)."""
    if not node:
        return ""
    try:
        import ray

        dead = any(n.get("NodeID") == node and not n.get("Alive") for n in ray.nodes())
    except Exception:
        return ""
    return ", which has died" if dead else ""


_ACTOR_ID = re.compile(r"\bactor ([0-9a-f]{16,})\b", re.IGNORECASE)
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")
_DETAIL_LINE = re.compile(r"^\s+[a-z_]+: ")  # Ray's "\tpid: 123" under an actor error
_NODE_ID = re.compile(r"Node Id: ([0-9a-f]+)")


def pick_winner(trials: list[TrialSummary], sweep: SweepSpec) -> tuple[TrialSummary, list[str]]:
    """The winner the gate scores, and the Pareto front's trial ids (``search: nsga2``; [] otherwise).

    Single-objective: :func:`pick_best` by ``sweep.metric``. Multi-objective: the best of the front
    (:func:`pareto_front`) by ``sweep.metric``, which is one of the objectives.

    Raises:
        SweepError: no trial saved a model with every objective (naming the first objective none reported).

    Example:
        >>> sweep = SweepSpec(search="nsga2", metric="rmse", mode="min", space={"a": {"type": "int", "low": 1,
        ...     "high": 3}}, objectives=[{"metric": "rmse", "mode": "min"}, {"metric": "mb", "mode": "min"}])
        >>> t = lambda i, rmse, mb: TrialSummary(trial_id=f"t{i}", params={}, metrics={"rmse": rmse, "mb": mb},
        ...                                      artifact_uri=f"s3://b/t{i}")
        >>> best, front = pick_winner([t(0, 2.0, 1.0), t(1, 1.0, 3.0), t(2, 2.5, 2.0)], sweep)
        >>> best.trial_id, front
        ('t1', ['t0', 't1'])
    """
    if not sweep.objectives:
        return pick_best(trials, sweep.metric, sweep.mode), []
    front = pareto_front(trials, sweep.objectives)
    if not front:
        for objective in sweep.objectives:
            pick_best(trials, objective.metric, objective.mode)  # raises naming what no trial reported
        raise SweepError("no trial of the sweep saved a model with every objective "
                         f"({', '.join(o.metric for o in sweep.objectives)}) reported",
                         fix="the job must report every metric of sweep.objectives on every report")
    return pick_best([t for t in trials if t.trial_id in front], sweep.metric, sweep.mode), front


def pareto_front(trials: list[TrialSummary], objectives: list[ObjectiveSpec]) -> list[str]:
    """Trial ids of the non-dominated trials among those that saved a model with every objective reported as a
    finite number, by their last reported values; in the order of ``trials``.

    A trial dominates another when it is at least as good on every objective (lower for ``min``, higher for
    ``max``) and better on one. Trials with equal values on every objective do not dominate each other.

    Example:
        >>> objs = [ObjectiveSpec(metric="rmse", mode="min"), ObjectiveSpec(metric="auc", mode="max")]
        >>> t = lambda i, rmse, auc, saved=True: TrialSummary(trial_id=f"t{i}", params={},
        ...     metrics={"rmse": rmse, "auc": auc}, artifact_uri=f"s3://b/t{i}" if saved else None)
        >>> pareto_front([t(0, 1.0, 0.8), t(1, 2.0, 0.9), t(2, 2.0, 0.7), t(3, 0.5, 0.95, saved=False),
        ...               t(4, 1.0, 0.8)], objs)
        ['t0', 't1', 't4']
    """
    def values(trial: TrialSummary) -> list[float] | None:
        out = []
        for o in objectives:
            v = trial.metrics.get(o.metric)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return None
            out.append(float(v) if o.mode == "min" else -float(v))  # lower is better for every entry
        return out

    scored = [(t, v) for t in trials if t.artifact_uri and (v := values(t)) is not None]

    def dominated(v: list[float]) -> bool:
        return any(all(a <= b for a, b in zip(w, v, strict=True)) and w != v for _, w in scored)

    return [t.trial_id for t, v in scored if not dominated(v)]


def pick_best(trials: list[TrialSummary], metric: str, mode: str) -> TrialSummary:
    """The best trial that saved a model, by its last reported metric.

    Raises:
        SweepError: no trial saved a model with ``metric`` (see :func:`no_model_error` for what it says).
    """
    done = [t for t in trials if t.artifact_uri and isinstance(t.metrics.get(metric), (int, float))]
    if not done:
        raise no_model_error(trials, metric)
    key = (lambda t: t.metrics[metric]) if mode == "min" else (lambda t: -t.metrics[metric])
    return min(done, key=key)


_TUNE_KEYS = frozenset({"training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore",
                        "iterations_since_restore", "timestamp", "done", "trial_id", "date", "hostname", "node_ip",
                        "pid", "experiment_tag", "checkpoint_dir_name", "should_checkpoint"})
"""Result keys Tune adds to every report; what a trial reported is the rest."""


def no_model_error(trials: list[TrialSummary], metric: str, limit: int = 600) -> SweepError:
    """Why no trial of the sweep gave a model with ``metric``, for the run's error.

    When trials failed, the headline names the first failed trial's exception; the first is the one with the
    smallest trial id (Tune numbers trials ``<experiment>_00000``, ``_00001``... in the order the searcher made
    them, whereas the order trials are collected in depends on when each first reported). The fix names where its
    trace is and what the other failed trials raised (those raising the same are counted, not repeated), cut to
    ``limit`` characters. Without failures it says whether trials saved models without the metric or ended
    without saving one, or that no trial ran.

    Example:
        >>> t = lambda i, error=None, **kw: TrialSummary(trial_id=f"ab_0000{i}", params={}, error=error, **kw)
        >>> err = no_model_error([
        ...     t(1, "ValueError: bad label (trial ab_00001 on node n1; see /r/t1/error.txt)"),
        ...     t(0, "KeyError: 'y' (trial ab_00000 on node n2; see /r/t0/error.txt)"),
        ...     t(2, "ValueError: bad label (trial ab_00002 on node n1; see /r/t2/error.txt)")], "rmse")
        >>> err.headline
        "every trial of the sweep failed (3 of 3); the first (trial ab_00000) raised KeyError: 'y'"
        >>> for part in err.fix.split("; other failed trials: "):
        ...     print(part)
        trial ab_00000 ran on node n2; see /r/t0/error.txt
        ValueError: bad label (trial ab_00001 on node n1; see /r/t1/error.txt); 1 more raised the same
        >>> no_model_error([t(0, metrics={"auc": 0.7}, artifact_uri="s3://b/t0")], "rmse").headline
        "no trial of the sweep reported metric 'rmse'; 1 of 1 trial(s) saved a model but reported only ['auc']"
        >>> no_model_error([t(0)], "rmse").headline
        "no trial of the sweep saved a model with metric 'rmse'; 1 trial(s) ended, without an error and without saving"
        >>> no_model_error([], "rmse").headline
        "no trial of the sweep ran, so none saved a model with metric 'rmse'"
    """
    failed = sorted((t for t in trials if t.error), key=lambda t: t.trial_id)
    if failed:
        first, first_where = _split_error(failed[0])
        if len(failed) == len(trials):
            headline = f"every trial of the sweep failed ({len(failed)} of {len(trials)})"
        else:
            headline = (f"no trial of the sweep saved a model with metric {metric!r}; "
                        f"{len(failed)} of {len(trials)} trial(s) failed")
        headline += f"; the first (trial {failed[0].trial_id}) raised {first}"
        details = [f"trial {failed[0].trial_id} ran {first_where}"] if first_where else []
        others = failed[1:]
        different, seen = [], {first}
        for t in others:
            what = _split_error(t)[0]
            if what not in seen:
                seen.add(what)
                different.append(str(t.error))
        if different:
            details.append("other failed trials: " + "; ".join(different))
        if len(others) > len(different):
            details.append(f"{len(others) - len(different)} more raised the same")
        fix = "; ".join(details)
        return SweepError(headline, fix=(fix[: limit - 3] + "...") if len(fix) > limit else fix or None)
    if not trials:
        return SweepError(f"no trial of the sweep ran, so none saved a model with metric {metric!r}",
                          fix="check that the cluster can place one trial (sweep.resources) and that "
                              "sweep.time_budget leaves time for one")
    saved = [t for t in trials if t.artifact_uri]
    if saved:
        reported = sorted({k for t in saved for k in t.metrics if k not in _TUNE_KEYS and k != metric})
        return SweepError(f"no trial of the sweep reported metric {metric!r}; {len(saved)} of {len(trials)} trial(s) "
                          f"saved a model but reported only {reported}",
                          fix="set sweep.metric to one the job reports on every report")
    return SweepError(f"no trial of the sweep saved a model with metric {metric!r}; {len(trials)} trial(s) ended, "
                      "without an error and without saving",
                      fix="the job's train() must end with ctx.save_model(...); trials stopped early (by the "
                          "scheduler or sweep.time_budget) save none")


def _split_error(trial: TrialSummary) -> tuple[str, str]:
    """A trial's error as :func:`_summary` wrote it, split into the exception and where it ran ('' if unknown).

    Example:
        >>> _split_error(TrialSummary(trial_id="a_1", params={}, error="ValueError: x (trial a_1 on node n; see f)"))
        ('ValueError: x', 'on node n; see f')
    """
    text = str(trial.error or "")
    what, marker, where = text.rpartition(f" (trial {trial.trial_id} ")
    if not marker or not where.endswith(")"):
        return text, ""
    return what, where[:-1]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Call ``fn`` and return its result with the seconds it took."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start
