"""Behaviour every :class:`~streamtune.registry.Registry` implementation must have.

Subclass :class:`RegistryConformance` in a ``test_*.py`` module and provide a ``registry`` fixture that
yields a fresh, empty registry::

    class TestMyRegistry(RegistryConformance):
        @pytest.fixture
        def registry(self, tmp_path):
            with MyRegistry(...) as reg:
                yield reg

A registry that several processes share (not ``sqlite:///:memory:``) also subclasses
:class:`SharedRegistryConformance`, with a ``registry_url`` fixture naming a fresh database: two objects see
each other's writes, concurrent writers never get the same model version or move offsets back, exactly one of
several processes racing for a lease wins, and a takeover waits for a fenced write already in flight.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from streamtune.config.jobspec import JobSpec
from streamtune.errors import FencedError, RegistryError
from streamtune.registry import (
    CommandOutcome,
    CommandStatus,
    Registry,
    RunRecord,
    RunStatus,
    open_registry,
    run_id_for,
)
from streamtune.registry.commands import CancelRun, Promote, RunNow, SubmitSpec


def make_run(dataset: str = "clicks", first: int = 0, last: int = 9, **kw: object) -> RunRecord:
    """A run for ``dataset`` covering offsets ``[first, last]`` of partition 0 of topic ``data``."""
    offsets = {"data:0": [first, last]}
    fields: dict[str, object] = {
        "run_id": run_id_for(dataset, offsets),
        "spec_name": "ctr",
        "dataset": dataset,
        "offsets": offsets,
        "event_ids": [f"e{i}" for i in range(first, last + 1)],
        "num_rows": 10 * (last - first + 1),
        "uris": [f"file:///data/{dataset}/{first}.parquet"],
        "reason": "min_rows",
    }
    fields.update(kw)
    return RunRecord.model_validate(fields)


def register(reg: Registry, name: str = "ctr", run_id: str = "r-1", **kw: object):
    args = {
        "artifact_uri": f"file:///art/{name}/{run_id}",
        "params": {"lr": 0.1},
        "metrics": {"auc": 0.9},
        "lineage": {"run_id": run_id},
    }
    args.update(kw)
    return reg.register_model(name, run_id, **args)


def make_spec(name: str = "ctr", min_rows: int = 100) -> JobSpec:
    return JobSpec.model_validate({
        "name": name, "dataset": {"name": "clicks", "label": "y"}, "trigger": {"min_rows": min_rows},
        "job": {"entrypoint": "jobs.x:Job"}, "serve": {"app": name},
        "sweep": {"metric": "auc", "mode": "max", "space": {"a": {"type": "int", "low": 1, "high": 3}}},
    })


class RegistryConformance:
    """The registry contract. Subclasses provide a ``registry`` fixture."""

    # -- specs -------------------------------------------------------------------------------------

    def test_spec_roundtrip_and_upsert(self, registry: Registry) -> None:
        assert registry.get_spec("ctr") is None
        registry.put_spec(make_spec(min_rows=100))
        stored = registry.put_spec(make_spec(min_rows=200))
        assert stored.spec == make_spec(min_rows=200) and not stored.paused
        assert registry.get_spec("ctr") == stored

    def test_list_specs_is_ordered_by_name(self, registry: Registry) -> None:
        for name in ("zeta", "alpha", "mid"):
            registry.put_spec(make_spec(name))
        assert [s.name for s in registry.list_specs()] == ["alpha", "mid", "zeta"]

    def test_pause_survives_resubmission_and_unknown_spec_is_named(self, registry: Registry) -> None:
        registry.put_spec(make_spec())
        assert registry.set_spec_paused("ctr", True).paused
        assert registry.put_spec(make_spec(min_rows=300)).paused
        assert not registry.set_spec_paused("ctr", False).paused
        with pytest.raises(RegistryError, match='"ghost"'):
            registry.set_spec_paused("ghost", True)

    # -- commit_window -----------------------------------------------------------------------------

    def test_commit_window_stores_offsets_windows_and_runs(self, registry: Registry) -> None:
        run = make_run()
        inserted = registry.commit_window(
            "g1", {("data", 0): 10, ("data", 1): 4}, {"ctr/clicks": {"rows": 3, "events": ["e10"]}}, [run]
        )
        assert inserted == [run.run_id]
        assert registry.load_offsets("g1") == {("data", 0): 10, ("data", 1): 4}
        assert registry.load_windows() == {"ctr/clicks": {"rows": 3, "events": ["e10"]}}
        assert registry.get_run(run.run_id) == run

    def test_commit_window_replay_is_idempotent(self, registry: Registry) -> None:
        run = make_run()
        assert registry.commit_window("g", {("data", 0): 10}, {}, [run]) == [run.run_id]
        registry.update_run(run.run_id, status=RunStatus.RUNNING)
        # A controller that crashed before acknowledging replays the same window.
        assert registry.commit_window("g", {("data", 0): 10}, {}, [run]) == []
        assert registry.get_run(run.run_id).status is RunStatus.RUNNING
        assert len(registry.list_runs()) == 1

    def test_commit_window_skips_duplicates_within_one_batch(self, registry: Registry) -> None:
        run, other = make_run(first=0, last=9), make_run(first=10, last=19)
        assert registry.commit_window("g", {}, {}, [run, run, other]) == [run.run_id, other.run_id]
        assert {r.run_id for r in registry.list_runs()} == {run.run_id, other.run_id}

    def test_commit_window_upserts_offsets_per_group(self, registry: Registry) -> None:
        registry.commit_window("g1", {("data", 0): 10, ("data", 1): 5}, {}, [])
        registry.commit_window("g1", {("data", 0): 20}, {}, [])
        registry.commit_window("g2", {("data", 0): 3}, {}, [])
        assert registry.load_offsets("g1") == {("data", 0): 20, ("data", 1): 5}
        assert registry.load_offsets("g2") == {("data", 0): 3}
        assert registry.load_offsets("nobody") == {}

    def test_stored_offsets_never_move_backwards_except_by_a_recorded_reset(self, registry: Registry) -> None:
        registry.commit_window("g", {("data", 0): 20, ("data", 1): 5}, {}, [])
        with pytest.raises(RegistryError, match="only move forward"):
            registry.commit_window("g", {("data", 0): 19, ("data", 1): 9}, {"w": {"rows": 1}}, [make_run()])
        assert registry.load_offsets("g") == {("data", 0): 20, ("data", 1): 5}
        assert registry.load_windows() == {} and registry.list_runs() == []
        with pytest.raises(RegistryError, match="reason"):
            registry.reset_offsets("g", {("data", 0): 0}, reason="", actor="ops")
        resets = registry.reset_offsets("g", {("data", 0): 0}, reason="topic recreated", actor="ops")
        assert [(r.topic, r.partition, r.previous, r.offset) for r in resets] == [("data", 0, 20, 0)]
        assert registry.load_offsets("g") == {("data", 0): 0, ("data", 1): 5}
        assert [(r.reason, r.actor) for r in registry.offset_resets("g")] == [("topic recreated", "ops")]
        assert registry.offset_resets("other") == []

    def test_commit_window_replaces_and_deletes_window_state(self, registry: Registry) -> None:
        registry.commit_window("g", {}, {"a": {"rows": 1}, "b": {"rows": 2}, "c": {"rows": 3}}, [])
        registry.commit_window("g", {}, {"a": {"rows": 5}, "b": {}, "c": None}, [])
        assert registry.load_windows() == {"a": {"rows": 5}}

    def test_commit_window_with_colliding_run_id_stores_nothing(self, registry: Registry) -> None:
        run = make_run()
        registry.commit_window("g", {("data", 0): 10}, {"w": {"rows": 1}}, [run])
        impostor = make_run(dataset="other", run_id=run.run_id)
        fresh = make_run(first=10, last=19)
        with pytest.raises(RegistryError, match=run.run_id):
            registry.commit_window("g", {("data", 0): 20}, {"w": {"rows": 2}}, [fresh, impostor])
        assert registry.load_offsets("g") == {("data", 0): 10}
        assert registry.load_windows() == {"w": {"rows": 1}}
        assert registry.get_run(fresh.run_id) is None
        assert registry.get_run(run.run_id).dataset == "clicks"

    # -- runs --------------------------------------------------------------------------------------

    def test_get_run_roundtrips_every_field(self, registry: Registry) -> None:
        run = make_run(
            status=RunStatus.SUCCEEDED,
            sweep={"best": {"params": {"lr": 0.1}, "auc": 0.93}},
            gate={"passed": True, "reasons": []},
            model_version=3,
            error=None,
            timings={"sweep": 12.5},
        )
        registry.commit_window("g", {}, {}, [run])
        assert registry.get_run(run.run_id) == run
        assert registry.get_run("r-does-not-exist") is None

    def test_list_runs_newest_first_with_filters(self, registry: Registry) -> None:
        now = time.time()
        runs = [
            make_run(first=0, last=9, created_at=now - 30, spec_name="a"),
            make_run(first=10, last=19, created_at=now - 20, spec_name="b", status="running"),
            make_run(first=20, last=29, created_at=now - 10, spec_name="a", status="failed"),
        ]
        registry.commit_window("g", {}, {}, runs)
        ids = [r.run_id for r in runs]
        assert [r.run_id for r in registry.list_runs()] == ids[::-1]
        assert [r.run_id for r in registry.list_runs(spec_name="a")] == [ids[2], ids[0]]
        assert [r.run_id for r in registry.list_runs(status=RunStatus.RUNNING)] == [ids[1]]
        assert [r.run_id for r in registry.list_runs(status="failed")] == [ids[2]]
        assert [r.run_id for r in registry.list_runs(status=["pending", RunStatus.FAILED])] == [
            ids[2],
            ids[0],
        ]
        assert [r.run_id for r in registry.list_runs(spec_name="a", status="pending")] == [ids[0]]
        assert [r.run_id for r in registry.list_runs(limit=2)] == [ids[2], ids[1]]
        assert registry.list_runs(spec_name="none") == []

    def test_list_runs_rejects_bad_status_and_limit(self, registry: Registry) -> None:
        with pytest.raises(RegistryError, match="bogus"):
            registry.list_runs(status="bogus")
        with pytest.raises(RegistryError, match="limit"):
            registry.list_runs(limit=0)

    def test_update_run_changes_fields_and_updated_at(self, registry: Registry) -> None:
        run = make_run(created_at=time.time() - 60, updated_at=time.time() - 60)
        registry.commit_window("g", {}, {}, [run])
        updated = registry.update_run(
            run.run_id,
            status="succeeded",
            sweep={"best_trial": "t3"},
            timings={"sweep": 4.0},
            model_version=2,
        )
        assert updated.status is RunStatus.SUCCEEDED
        assert updated.updated_at > run.updated_at
        assert updated.created_at == run.created_at
        stored = registry.get_run(run.run_id)
        assert stored == updated
        assert (stored.sweep, stored.timings, stored.model_version) == (
            {"best_trial": "t3"},
            {"sweep": 4.0},
            2,
        )
        assert stored.event_ids == run.event_ids

    def test_update_run_errors(self, registry: Registry) -> None:
        run = make_run()
        registry.commit_window("g", {}, {}, [run])
        with pytest.raises(RegistryError, match="r-missing"):
            registry.update_run("r-missing", status="running")
        with pytest.raises(RegistryError, match="colour"):
            registry.update_run(run.run_id, colour="blue")
        with pytest.raises(RegistryError, match="offsets"):
            registry.update_run(run.run_id, offsets={"data:0": [0, 99]})
        with pytest.raises(RegistryError, match="status"):
            registry.update_run(run.run_id, status="exploded")
        assert registry.get_run(run.run_id) == run

    # -- models ------------------------------------------------------------------------------------

    def test_register_model_numbers_versions_per_name(self, registry: Registry) -> None:
        assert [register(registry, "ctr", f"r-{i}").version for i in range(3)] == [1, 2, 3]
        assert register(registry, "churn", "r-0").version == 1
        mv = registry.get_model("ctr", 2)
        assert (mv.name, mv.version, mv.run_id, mv.artifact_uri) == ("ctr", 2, "r-1", "file:///art/ctr/r-1")
        assert (mv.params, mv.metrics, mv.lineage) == ({"lr": 0.1}, {"auc": 0.9}, {"run_id": "r-1"})
        assert registry.get_model("ctr", 9) is None
        assert registry.get_model("nope", 1) is None

    def test_register_model_is_idempotent_per_run(self, registry: Registry) -> None:
        first = register(registry, "ctr", "r-a")
        again = register(registry, "ctr", "r-a", metrics={"auc": 0.1})
        assert again == first
        assert [m.version for m in registry.list_models("ctr")] == [1]

    def test_register_model_keeps_the_manifest_digest(self, registry: Registry) -> None:
        digest = hashlib.sha256(b'{"files": {}}').hexdigest()
        mv = register(registry, "ctr", "r-d", manifest_sha256=digest)
        assert mv.manifest_sha256 == digest
        assert registry.get_model("ctr", mv.version).manifest_sha256 == digest
        assert register(registry, "ctr", "r-d", manifest_sha256="ab" * 32).manifest_sha256 == digest  # first wins
        assert register(registry, "ctr", "r-none").manifest_sha256 is None
        assert [m.manifest_sha256 for m in registry.list_models("ctr")] == [digest, None]
        assert registry.get_alias("ctr", "champion") is None
        registry.set_alias("ctr", "champion", mv.version)
        assert registry.get_alias("ctr", "champion").manifest_sha256 == digest

    def test_register_model_refuses_a_digest_that_is_not_a_sha256(self, registry: Registry) -> None:
        for bad in ("AB" * 32, "ab" * 31, "zz" * 32):
            with pytest.raises(RegistryError, match=f'Got "{bad}" for manifest_sha256 of model ctr run r-x; '
                                                    "must be a sha256 in 64 lower-case hex digits"):
                register(registry, "ctr", "r-x", manifest_sha256=bad)
        assert registry.list_models("ctr") == []

    def test_register_model_keeps_nested_json(self, registry: Registry) -> None:
        lineage = {"event_ids": ["e1", "e2"], "offsets": {"data:0": [0, 9]}, "snapshot": "sha256:ab"}
        mv = register(registry, lineage=lineage, params={"layers": [64, 32], "opt": {"name": "adam"}})
        stored = registry.get_model("ctr", mv.version)
        assert stored.lineage == lineage
        assert stored.params == {"layers": [64, 32], "opt": {"name": "adam"}}

    def test_list_models_ordering_and_filter(self, registry: Registry) -> None:
        register(registry, "b", "r-1")
        register(registry, "a", "r-1")
        register(registry, "b", "r-2")
        assert [(m.name, m.version) for m in registry.list_models()] == [("a", 1), ("b", 1), ("b", 2)]
        assert [(m.name, m.version) for m in registry.list_models("b")] == [("b", 1), ("b", 2)]
        assert registry.list_models("zzz") == []

    # -- aliases -----------------------------------------------------------------------------------

    def test_set_alias_records_previous_and_history(self, registry: Registry) -> None:
        for i in range(3):
            register(registry, "ctr", f"r-{i}")
        assert registry.get_alias("ctr", "champion") is None
        first = registry.set_alias("ctr", "champion", 1, reason="first")
        second = registry.set_alias("ctr", "champion", 2, reason="gate passed")
        registry.set_alias("ctr", "challenger", 3)
        assert (first.version, first.previous) == (1, None)
        assert (second.version, second.previous, second.reason) == (2, 1, "gate passed")
        assert registry.get_alias("ctr", "champion").version == 2
        assert registry.get_alias("ctr", "challenger").run_id == "r-2"
        history = registry.alias_history("ctr", "champion")
        assert [(e.version, e.previous, e.reason) for e in history] == [
            (1, None, "first"),
            (2, 1, "gate passed"),
        ]
        assert [e.alias for e in registry.alias_history("ctr")] == ["champion", "champion", "challenger"]
        assert registry.alias_history("other") == []

    def test_rollback_is_an_alias_move_back(self, registry: Registry) -> None:
        register(registry, "ctr", "r-1")
        register(registry, "ctr", "r-2")
        registry.set_alias("ctr", "champion", 1)
        registry.set_alias("ctr", "champion", 2)
        event = registry.set_alias("ctr", "champion", 1, reason="rollback: p99")
        assert (event.version, event.previous) == (1, 2)
        assert registry.get_alias("ctr", "champion").version == 1

    def test_set_alias_to_unknown_version_fails_and_changes_nothing(self, registry: Registry) -> None:
        register(registry, "ctr", "r-1")
        registry.set_alias("ctr", "champion", 1)
        with pytest.raises(RegistryError, match="version 7"):
            registry.set_alias("ctr", "champion", 7)
        with pytest.raises(RegistryError, match="ghost"):
            registry.set_alias("ghost", "champion", 1)
        assert registry.get_alias("ctr", "champion").version == 1
        assert len(registry.alias_history("ctr")) == 1

    def test_remove_alias(self, registry: Registry) -> None:
        register(registry, "ctr", "r-1")
        assert registry.remove_alias("ctr", "champion") is None
        registry.set_alias("ctr", "champion", 1)
        event = registry.remove_alias("ctr", "champion", reason="retired")
        assert (event.version, event.previous, event.reason) == (None, 1, "retired")
        assert registry.get_alias("ctr", "champion") is None
        assert [e.version for e in registry.alias_history("ctr", "champion")] == [1, None]

    # -- commands ----------------------------------------------------------------------------------

    def test_commands_are_appended_pending_and_finish_with_outcome_or_error(self, registry: Registry) -> None:
        first = registry.append_command(SubmitSpec(spec=make_spec()), actor="ana", reason="new model")
        second = registry.append_command(Promote(model="ctr", version=2), actor="bo")
        third = registry.append_command(CancelRun(run_id="r-1"), actor="cy", reason="wrong data")
        assert first.status is CommandStatus.PENDING and first.command.spec == make_spec()
        assert registry.get_command(first.id) == first and registry.get_command("c-nope") is None
        queue = registry.list_commands([CommandStatus.PENDING], oldest_first=True)
        assert [c.id for c in queue] == [first.id, second.id, third.id]
        assert [c.id for c in registry.list_commands(limit=2)] == [third.id, second.id]
        running = registry.start_command(first.id, "ctl-1")
        assert (running.status, running.controller) == (CommandStatus.RUNNING, "ctl-1") and running.started_at
        done = registry.finish_command(first.id, outcome=CommandOutcome(message="stored", run_id="r-9"))
        failed = registry.finish_command(second.id, error='Got "2" for version of model ctr')
        assert (done.status, done.outcome.run_id) == (CommandStatus.SUCCEEDED, "r-9") and done.finished_at
        assert (failed.status, failed.error) == (CommandStatus.FAILED, 'Got "2" for version of model ctr')
        assert [c.id for c in registry.list_commands(["pending", "running"])] == [third.id]
        assert registry.get_command(third.id).reason == "wrong data"

    def test_command_errors_are_named(self, registry: Registry) -> None:
        with pytest.raises(RegistryError, match="actor"):
            registry.append_command(RunNow(spec="ctr"), actor="")
        with pytest.raises(RegistryError, match="c-missing"):
            registry.start_command("c-missing", "ctl")
        cmd = registry.append_command(RunNow(spec="ctr"), actor="ana")
        with pytest.raises(RegistryError, match="exactly one"):
            registry.finish_command(cmd.id)
        with pytest.raises(RegistryError, match="bogus"):
            registry.list_commands("bogus")

    # -- the lease and fencing -----------------------------------------------------------------------

    def test_lease_is_exclusive_until_it_lapses_and_each_new_holder_gets_a_higher_token(
        self, registry: Registry
    ) -> None:
        a = registry.acquire_lease("controller", "a", ttl_s=0.3)
        assert a is not None and a.token == 1
        assert registry.acquire_lease("controller", "b", ttl_s=10) is None
        again = registry.acquire_lease("controller", "a", ttl_s=0.3)
        assert again is not None and again.token == 1  # the holder keeps its token
        time.sleep(0.35)
        b = registry.acquire_lease("controller", "b", ttl_s=10)
        assert b is not None and (b.holder, b.token) == ("b", 2)
        with pytest.raises(FencedError, match="b holds token 2"):
            registry.renew_lease(a, ttl_s=10)
        renewed = registry.renew_lease(b, ttl_s=10)
        assert renewed.expires_at >= b.expires_at and renewed.token == 2
        registry.release_lease(a)  # not ours any more: a no-op
        assert not registry.get_lease("controller").expired()
        registry.release_lease(b)
        assert registry.get_lease("controller").expired()
        c = registry.acquire_lease("controller", "c", ttl_s=10)
        assert c is not None and c.token == 3
        assert registry.get_lease("other") is None

    def test_a_stale_leaders_writes_are_refused_and_change_nothing(self, registry: Registry) -> None:
        old = registry.acquire_lease("controller", "old", ttl_s=0.05)
        assert old is not None
        registry.fence(old)
        registry.commit_window("g", {("data", 0): 5}, {}, [make_run()])  # current: allowed
        time.sleep(0.06)
        assert registry.acquire_lease("controller", "new", ttl_s=10) is not None
        writes = [
            lambda: registry.commit_window("g", {("data", 0): 9}, {"w": {"n": 1}}, [make_run(first=10, last=19)]),
            lambda: registry.put_spec(make_spec()),
            lambda: registry.update_run(make_run().run_id, status="running"),
            lambda: register(registry, "ctr", "r-x"),
            lambda: registry.reset_offsets("g", {("data", 0): 0}, reason="x", actor="y"),
        ]
        for write in writes:
            with pytest.raises(FencedError, match="write refused: old wrote with lease token 1"):
                write()
        assert registry.load_offsets("g") == {("data", 0): 5} and registry.load_windows() == {}
        assert [r.status for r in registry.list_runs()] == [RunStatus.PENDING]
        assert registry.list_specs() == [] and registry.list_models() == []
        # callers' commands are never fenced; lifting the fence lets writes through again
        assert registry.append_command(RunNow(spec="ctr"), actor="ana").status is CommandStatus.PENDING
        registry.fence(None)
        registry.put_spec(make_spec())

    # -- lifecycle ---------------------------------------------------------------------------------

    # -- spec health, deletion, attempts, queues, seen keys (reliability) ------------------------------

    def test_spec_health_counts_failures_and_recovery_clears_them(self, registry: Registry) -> None:
        registry.put_spec(make_spec())
        first = registry.set_spec_health("ctr", error="job.code missing", retry_at=100.0)
        second = registry.set_spec_health("ctr", error="still missing", retry_at=200.0)
        assert (first.failures, second.failures, second.error, second.retry_at) == (1, 2, "still missing", 200.0)
        assert second.state == "error" and registry.get_spec("ctr").failures == 2
        healed = registry.set_spec_health("ctr", error=None)
        assert (healed.error, healed.failures, healed.retry_at, healed.state) == (None, 0, None, "active")
        with pytest.raises(RegistryError, match='"ghost"'):
            registry.set_spec_health("ghost", error="x")

    def test_delete_spec_keeps_runs_and_models_and_drops_its_window_and_seen_keys(self, registry: Registry) -> None:

        from streamtune.registry import SeenKey

        registry.put_spec(make_spec())
        run = make_run()
        registry.commit_window("g", {}, {"ctr": {"events": []}}, [run],
                               seen=[SeenKey(spec_name="ctr", key="id:e0", run_id=run.run_id)])
        register(registry, "ctr", run.run_id)
        assert registry.delete_spec("ctr") and not registry.delete_spec("ctr")
        assert registry.get_spec("ctr") is None and registry.load_windows() == {}
        assert registry.seen_keys("ctr", ["id:e0"]) == set()
        assert registry.get_run(run.run_id) is not None and registry.get_model("ctr", 1) is not None

    def test_count_runs_gives_the_queue_depth_per_spec_beyond_any_list_limit(self, registry: Registry) -> None:
        runs = [make_run(first=10 * i, last=10 * i + 9) for i in range(5)]
        runs.append(make_run(dataset="views", spec_name="other"))
        registry.commit_window("g", {}, {}, runs)
        registry.update_run(runs[0].run_id, status=RunStatus.RUNNING)
        assert registry.count_runs("ctr", RunStatus.PENDING) == 4
        assert registry.count_runs("ctr", ["pending", "running"]) == 5
        assert registry.count_runs("other", "pending") == 1 and registry.count_runs("ghost", "pending") == 0
        assert registry.count_runs() == 6
        with pytest.raises(RegistryError, match='"nope"'):
            registry.count_runs("ctr", "nope")

    def test_seen_keys_are_per_spec_idempotent_and_purged_by_age(self, registry: Registry) -> None:
        import dataclasses

        from streamtune.registry import SeenKey

        old, new = SeenKey(spec_name="a", key="uri:/d/1", run_id="r-1", first_seen=10.0), \
            SeenKey(spec_name="a", key="id:e2", run_id="r-2", first_seen=time.time())
        registry.commit_window("g", {}, {}, [], seen=[old, new])
        registry.commit_window("g", {}, {}, [], seen=[dataclasses.replace(old, run_id="r-9")])  # no-op
        keys = [f"id:e{i}" for i in range(700)] + ["uri:/d/1"]  # more keys than one query takes
        assert registry.seen_keys("a", keys) == {"uri:/d/1", "id:e2"} and registry.seen_keys("b", keys) == set()
        assert registry.purge_seen(older_than=100.0) == 1
        assert registry.seen_keys("a", keys) == {"id:e2"}

    def test_runs_keep_their_attempts_and_list_oldest_first_for_a_queue(self, registry: Registry) -> None:
        from streamtune.registry import RunAttempt

        now = time.time()
        runs = [make_run(first=10 * i, last=10 * i + 9, created_at=now + i) for i in range(3)]
        registry.commit_window("g", {}, {}, runs)
        failed = RunAttempt(attempt=1, submission_id=runs[0].run_id, error="RuntimeError: boom", started_at=now)
        updated = registry.update_run(runs[0].run_id, attempt=2, attempts=[failed], retry_at=now + 30)
        assert updated.submission_id == f"{runs[0].run_id}-a2" and registry.get_run(runs[0].run_id) == updated
        assert [r.run_id for r in registry.list_runs(oldest_first=True, limit=2)] == [runs[0].run_id, runs[1].run_id]

    def test_closed_registry_raises(self, registry: Registry) -> None:
        with registry as reg:
            reg.put_spec(make_spec("x"))
        with pytest.raises(RegistryError, match="closed"):
            registry.get_spec("x")
        registry.close()  # closing twice is fine


_LEASE_RACER = """
import json, sys
from streamtune.registry import open_registry
with open_registry(sys.argv[1]) as reg:
    print("ready", flush=True)
    for name in sys.stdin:  # each line names a lease to race for, sent to every racer at once
        lease = reg.acquire_lease(name.strip(), sys.argv[2], ttl_s=30)
        print(json.dumps(None if lease is None else lease.token), flush=True)
"""


class SharedRegistryConformance:
    """What several registry objects on one database must show: threads, processes, locks.

    Subclasses provide a ``registry_url`` fixture naming a fresh, empty database that several connections
    and processes can open.
    """

    def test_two_registries_see_each_others_writes(self, registry_url: str) -> None:
        with open_registry(registry_url) as controller, open_registry(registry_url) as cli:
            run = make_run()
            controller.commit_window("g", {("data", 0): 10}, {"w": {"rows": 4}}, [run])
            assert cli.get_run(run.run_id) == run
            assert cli.load_offsets("g") == {("data", 0): 10}
            assert cli.load_windows() == {"w": {"rows": 4}}
            register(cli, "ctr", run.run_id)
            cli.set_alias("ctr", "champion", 1)
            assert controller.get_alias("ctr", "champion").run_id == run.run_id
            controller.update_run(run.run_id, status="promoted")
            assert cli.get_run(run.run_id).status is RunStatus.PROMOTED

    def test_another_process_sees_committed_windows(self, registry_url: str) -> None:
        with open_registry(registry_url) as reg:
            run = make_run()
            reg.commit_window("g", {("data", 0): 10}, {}, [run])
            script = textwrap.dedent(f"""
                from streamtune.registry import open_registry
                with open_registry({registry_url!r}) as reg:
                    print(reg.get_run({run.run_id!r}).num_rows, reg.load_offsets("g"))
                    reg.commit_window("g", {{("data", 0): 20}}, {{}}, [])
            """)
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            assert out.stdout.strip() == "100 {('data', 0): 10}"
            assert reg.load_offsets("g") == {("data", 0): 20}

    def test_concurrent_registrations_get_distinct_versions(self, registry_url: str) -> None:
        regs = [open_registry(registry_url) for _ in range(3)]
        versions: list[int] = []
        errors: list[BaseException] = []
        start = threading.Barrier(4)

        def worker(reg: Registry, prefix: str) -> None:
            try:
                start.wait()
                for i in range(15):
                    versions.append(register(reg, "ctr", f"{prefix}-{i}").version)
            except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(reg, f"r{n}")) for n, reg in enumerate(regs)]
        threads += [threading.Thread(target=worker, args=(regs[0], "shared"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for reg in regs:
            reg.close()
        assert errors == []
        assert sorted(versions) == list(range(1, 61))

    def test_concurrent_forward_offset_commits_never_move_offsets_back(self, registry_url: str) -> None:
        regs = [open_registry(registry_url) for _ in range(3)]
        refused: list[int] = []
        start = threading.Barrier(len(regs))

        def worker(reg: Registry, offsets: range) -> None:
            start.wait()
            for offset in offsets:
                try:
                    reg.commit_window("g", {("data", 0): offset}, {}, [])
                except RegistryError:  # another writer got further first: refused, not stored
                    refused.append(offset)

        threads = [threading.Thread(target=worker, args=(reg, range(n, 300, 3))) for n, reg in enumerate(regs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert regs[0].load_offsets("g") == {("data", 0): 299}
        assert all(offset < 299 for offset in refused)
        for reg in regs:
            reg.close()

    def test_of_processes_racing_for_a_lease_exactly_one_wins(self, registry_url: str) -> None:
        holders = [f"p{i}" for i in range(3)]
        racers = [subprocess.Popen([sys.executable, "-c", _LEASE_RACER, registry_url, holder], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE) for holder in holders]
        try:
            assert [p.stdout.readline().strip() for p in racers] == ["ready"] * len(racers)
            with open_registry(registry_url) as reg:
                reg.acquire_lease("lapsed", "gone", ttl_s=0.0)  # a lease to take over, not to create
                for name, token in (("fresh", 1), ("lapsed", 2)):
                    for p in racers:
                        p.stdin.write(f"{name}\n")
                        p.stdin.flush()
                    tokens = [json.loads(p.stdout.readline()) for p in racers]
                    assert sorted(tokens, key=lambda t: t or 0) == [None, None, token], (name, tokens)
                    assert reg.get_lease(name).holder == holders[tokens.index(token)]
        finally:
            for p in racers:
                p.stdin.close()
                p.wait(timeout=30)

    def test_a_takeover_waits_for_a_fenced_write_in_flight(
        self, registry_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with open_registry(registry_url) as old, open_registry(registry_url) as new:
            lease = old.acquire_lease("controller", "old", ttl_s=0.3)
            old.fence(lease)
            inside, done = threading.Event(), threading.Event()
            upsert = type(old)._upsert_offsets

            def slow_upsert(tx: object, group: str, offsets: dict) -> None:
                upsert(tx, group, offsets)  # the fence was checked; the lease lapses while this write runs
                inside.set()
                time.sleep(1.0)

            monkeypatch.setattr(old, "_upsert_offsets", slow_upsert)
            writer = threading.Thread(target=lambda: (old.commit_window("g", {("data", 0): 5}, {}, []), done.set()))
            writer.start()
            assert inside.wait(10)
            time.sleep(max(0.0, lease.expires_at - time.time()) + 0.05)
            asked = time.monotonic()
            took = new.acquire_lease("controller", "new", ttl_s=10)
            waited = time.monotonic() - asked
            writer.join()
            assert waited > 0.3, f"the takeover went through in {waited:.3f}s, while the fenced write was in flight"
            assert done.is_set(), "the write that passed its fence check was refused or failed"
            assert took is not None and took.token == 2
            assert took.acquired_at >= lease.expires_at
            monkeypatch.undo()
            assert new.load_offsets("g") == {("data", 0): 5}
            with pytest.raises(FencedError, match="new holds token 2"):
                old.commit_window("g", {("data", 0): 6}, {}, [])
            assert new.load_offsets("g") == {("data", 0): 5}
