"""Advance runs: submit the sweep as a Ray Job, read its result, gate it, register it, swap it in."""

from __future__ import annotations

import logging
import time
from typing import Any

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec
from streamtune.controller.ports import Jobs, Serving
from streamtune.errors import ConfigError, FencedError, StreamtuneError
from streamtune.faults import kill_point
from streamtune.registry.base import Registry
from streamtune.registry.records import RunRecord, RunStatus, SpecRecord
from streamtune.serving.records import ModelRef
from streamtune.sweeps.driver import result_uri
from streamtune.sweeps.schema import ChampionRef, SweepRequest, SweepResult
from streamtune.validation.gate import GateEvidence, MetricGate

log = logging.getLogger(__name__)

ACTIVE = (RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.SUCCEEDED)


class RunAdvancer:
    """Moves each spec's runs through pending → submitted → running → succeeded → promoted/rejected/failed.

    Every step is idempotent, so a controller that crashed at any point can call :meth:`step` again. A paused
    spec's active run goes on; no pending run of it starts.
    """

    def __init__(self, registry: Registry, jobs: Jobs, services: Serving, store: ArtifactStore) -> None:
        self.registry = registry
        self.jobs = jobs
        self.services = services
        self.store = store

    def step(self, specs: dict[str, SpecRecord]) -> None:
        """Advance the active run of each spec, or start its oldest pending one (per trigger.on_running)."""
        for record in specs.values():
            spec = record.spec
            active = self.registry.list_runs(spec.name, status=list(ACTIVE), limit=1)
            pending = self.registry.list_runs(spec.name, status=RunStatus.PENDING, limit=1000)[::-1]  # oldest first
            if active and pending:
                active, pending = self._apply_policy(spec, active[0], pending)
            if active:
                self._advance(spec, active[0])
            elif pending and not record.paused:
                self._submit(spec, pending[0])

    def _apply_policy(self, spec: JobSpec, active: RunRecord,
                      pending: list[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
        """What new windows do while a run is active: wait (queue), drop (skip), or take over (replace)."""
        policy = spec.trigger.on_running
        manual = [run for run in pending if run.command_id is not None]  # asked for by name: always queued
        windows = [run for run in pending if run.command_id is None]
        if policy == "queue" or not windows:
            return [active], pending
        if policy == "skip":
            for run in windows:
                self._update(run, status=RunStatus.REJECTED,
                             error=f"skipped: run {active.run_id} was active (trigger.on_running=skip)")
            return [active], manual
        newest = windows[-1]
        if active.status == RunStatus.SUCCEEDED:  # already gated: let the promotion finish first
            return [active], pending
        self.jobs.stop(active.run_id)
        self._update(active, status=RunStatus.FAILED,
                     error=f"replaced by run {newest.run_id} (trigger.on_running=replace)")
        for run in windows[:-1]:
            self._update(run, status=RunStatus.REJECTED,
                         error=f"replaced by run {newest.run_id} (trigger.on_running=replace)")
        return [], [newest, *manual]

    def out_uri(self, run: RunRecord) -> str:
        """Artifact-store URI of the run's request, Tune state, trial models and result."""
        return self.store.join(run.spec_name, run.run_id)

    def _submit(self, spec: JobSpec, run: RunRecord) -> None:
        if spec.job.code_uri is None:
            raise ConfigError(f"spec {spec.name} has no job.code_uri; submit it again so its code is stored")
        champ = self.registry.get_alias(spec.name, "champion")
        out = self.out_uri(run)
        req = SweepRequest(
            run_id=run.run_id, spec=spec.model_dump(mode="json"), uris=run.uris, event_ids=run.event_ids,
            trusted_roots=[self.store.root], out_uri=out,
            champion=ChampionRef(version=champ.version, artifact_uri=champ.artifact_uri) if champ else None,
        )
        request_uri = self.store.put_text(f"{out}/request.json", req.model_dump_json(indent=2))
        self.jobs.submit(run.run_id, request_uri, spec.job.code_uri)
        kill_point("runs.after_submit")
        self._update(run, status=RunStatus.SUBMITTED, timings={"submitted_at": time.time()})
        log.info("run %s submitted as a Ray Job", run.run_id)

    def _advance(self, spec: JobSpec, run: RunRecord) -> None:
        if run.status == RunStatus.SUCCEEDED:
            self._promote(spec, run)
            return
        status = self.jobs.status(run.run_id)
        if status is None:  # the cluster lost the job (restart): submit again under the same id
            self._submit(spec, run)
        elif status == "RUNNING" and run.status != RunStatus.RUNNING:
            self._update(run, status=RunStatus.RUNNING)
        elif status in ("FAILED", "STOPPED"):
            tail = self.jobs.logs_tail(run.run_id, 15)
            self._update(run, status=RunStatus.FAILED, error=f"sweep job {status.lower()}:\n{tail}")
        elif status == "SUCCEEDED":
            self._gate(spec, run)

    def _gate(self, spec: JobSpec, run: RunRecord) -> None:
        uri = result_uri(self.out_uri(run))
        if not self.store.exists(uri):
            self._update(run, status=RunStatus.FAILED, error=f"sweep job succeeded but wrote no {uri}")
            return
        result = SweepResult.model_validate_json(self.store.get_text(uri))
        started = run.timings.get("submitted_at", run.created_at)
        evidence = GateEvidence(
            metric=result.holdout.metric, mode=spec.sweep.mode, challenger=result.holdout.challenger,
            champion=result.holdout.champion, holdout_rows=result.holdout.rows,
            snapshot_rows=int(result.snapshot.get("num_rows", 0)), error=result.holdout.error,
        )
        t0 = time.perf_counter()
        report = MetricGate(spec.validation).validate(evidence)
        timings = {"sweep_job_s": round(time.time() - started, 3), **result.timings,
                   "gate_s": round(time.perf_counter() - t0, 4)}
        status = RunStatus.SUCCEEDED if report.passed else RunStatus.REJECTED
        run = self._update(run, status=status, sweep=result.model_dump(mode="json"),
                           gate=report.model_dump(mode="json"), timings=timings)
        log.info("run %s gate %s: %s", run.run_id, "passed" if report.passed else "rejected", report.reasons[0])
        if report.passed:
            self._promote(spec, run)

    def _promote(self, spec: JobSpec, run: RunRecord) -> None:
        result = SweepResult.model_validate(run.sweep)
        t0 = time.perf_counter()
        mv = self.registry.register_model(
            spec.name, run.run_id, str(result.best.artifact_uri), result.best.params,
            {"holdout_" + result.holdout.metric: result.holdout.challenger, **_numbers(result.best.metrics)},
            _lineage(run, result, spec),
        )
        self.registry.set_alias(spec.name, "challenger", mv.version, reason=f"run {run.run_id} passed the gate")
        t_reg = time.perf_counter() - t0
        try:
            swap = self.services.swap(spec, ModelRef(version=mv.version, uri=mv.artifact_uri))
        except FencedError:
            raise
        except StreamtuneError as exc:
            self._update(run, status=RunStatus.FAILED, model_version=mv.version, error=f"swap failed: {exc}")
            return
        kill_point("promote.after_swap")
        self.registry.set_alias(spec.name, "champion", mv.version, reason=f"run {run.run_id} hot-swapped")
        self._update(run, status=RunStatus.PROMOTED, model_version=mv.version,
                     timings={"register_s": round(t_reg, 4), "swap_load_s": swap.load_s,
                              "swap_flip_s": swap.flip_s, "swap_total_s": swap.total_s})
        log.info("run %s promoted: %s v%d is serving", run.run_id, spec.name, mv.version)

    def _update(self, run: RunRecord, **fields: Any) -> RunRecord:
        if "timings" in fields:
            fields["timings"] = {**run.timings, **fields["timings"]}
        return self.registry.update_run(run.run_id, **fields)


# What Ray Tune adds to every reported result; the model's metrics are what the job reported.
_TUNE_AUTOFILLED = {"training_iteration", "iterations_since_restore", "time_this_iter_s", "time_total_s",
                    "time_since_restore", "timestamp", "pid", "done", "trial_id", "date", "hostname", "node_ip",
                    "experiment_tag"}


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if k not in _TUNE_AUTOFILLED and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _lineage(run: RunRecord, result: SweepResult, spec: JobSpec) -> dict[str, Any]:
    """What a model version came from; ``node_id`` is the Ray node the winning trial ran on, ``trial_nodes``
    every trial's node by trial id (None where unknown)."""
    return {
        "run_id": run.run_id, "event_ids": run.event_ids, "offsets": run.offsets, "uris": run.uris,
        "snapshot_fingerprint": result.snapshot.get("fingerprint"), "snapshot_rows": result.snapshot.get("num_rows"),
        "trial_id": result.best.trial_id, "trials": len(result.trials), "trigger_reason": run.reason,
        "code_uri": spec.job.code_uri, "command_id": run.command_id,
        "node_id": result.best.node_id, "trial_nodes": {t.trial_id: t.node_id for t in result.trials},
    }
