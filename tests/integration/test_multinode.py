"""The session's multi-node cluster (head + worker node on this machine, ``streamtune up --workers 1``'s code):

- both nodes are alive with their custom resources, and this process joined through the head;
- one sweep (a real Ray Job) runs trials on both nodes and records each trial's node; its driver is on the head;
- a Serve app spread one replica per node (``max_replicas_per_node=1``) swaps under real HTTP load with no
  failed request, and the flip reaches both nodes' replicas.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures_ray import CPUS_PER_NODE, WORKERS, stored_code
from streamtune.config import load_jobspec
from streamtune.config.jobspec import ServeSpec
from streamtune.controller.runs import _lineage
from streamtune.dev.synthetic import write_batch
from streamtune.embedded.ray import HEAD_RESOURCE, node_resource, read_nodes
from streamtune.registry.records import RunRecord
from streamtune.serving import ModelService
from streamtune.sweeps import RayJobRunner, SweepRequest, SweepResult

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(WORKERS < 1, reason="the session cluster has no worker node (STREAMTUNE_TEST_RAY_WORKERS=0)"),
]
ROOT = Path(__file__).resolve().parents[2]
TESTJOBS = Path(__file__).resolve().parents[1] / "assets" / "testjobs" / "testjobs"
APP = "multinode"


def _alive_nodes() -> dict[str, dict[str, Any]]:
    """Live nodes by name ('head', 'w1'), from their streamtune_node_* resource."""
    import ray

    named = {}
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        names = [r.removeprefix("streamtune_node_") for r in node["Resources"] if r.startswith("streamtune_node_")]
        assert len(names) == 1, node["Resources"]
        named[names[0]] = node
    return named


def test_the_cluster_has_a_head_and_a_worker_node_each_with_its_resource(ray_services: Any) -> None:
    import ray

    nodes = _alive_nodes()
    assert set(nodes) == {"head", *(f"w{i}" for i in range(1, WORKERS + 1))}
    assert len([n for n in ray.nodes() if n["Alive"]]) == 1 + WORKERS
    for name, node in nodes.items():
        assert node["Resources"][node_resource(name)] == 1.0
        assert node["Resources"]["CPU"] == CPUS_PER_NODE
    assert nodes["head"]["Resources"][HEAD_RESOURCE] == 100.0
    assert all(HEAD_RESOURCE not in n["Resources"] for name, n in nodes.items() if name != "head")
    assert ray.get_runtime_context().get_node_id() == nodes["head"]["NodeID"]  # joined through the head
    recorded = {node.name: node for node in read_nodes(ray_services)}
    assert set(recorded) == set(nodes)
    ports = set()
    for i in range(1, WORKERS + 1):
        node = recorded[f"w{i}"]
        assert nodes[node.name]["NodeManagerPort"] == node.ports["node-manager-port"]
        assert nodes[node.name]["ObjectManagerPort"] == node.ports["object-manager-port"]
        ports |= set(node.ports.values())
    assert len(ports) == 8 * WORKERS  # no port shared between worker nodes
    print(f"\n[nodes] {json.dumps({name: n['NodeID'] for name, n in nodes.items()})}")


def _wait(runner: RayJobRunner, run_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = runner.status(run_id)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {run_id} still {status} after {timeout}s:\n{runner.logs_tail(run_id)}")


def test_one_sweep_runs_trials_on_both_nodes_and_records_each_trials_node(ray_services: Any, tmp_path: Path) -> None:
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    # 4 trials at once at 1 CPU each, long enough (300 rounds, 6 reports) that they overlap: one node's 2 CPUs
    # cannot hold them all
    sweep = spec.sweep.model_copy(update={"num_samples": 8, "max_concurrent": 2 * CPUS_PER_NODE})
    job = spec.job.model_copy(update={"params": {**spec.job.params, "num_boost_round": 300, "report_every": 50}})
    spec = spec.model_copy(update={"sweep": sweep, "job": job})
    runner = RayJobRunner(ray_services.jobs_url)
    run_id = "r-multinode000001"
    out = tmp_path / run_id
    out.mkdir()
    uris = write_batch(tmp_path / "data", 2, 3000, drift=0.0, seed=11)
    request = SweepRequest(run_id=run_id, spec=spec.model_dump(mode="json"), uris=uris, out_uri=str(out),
                           trusted_roots=[str(tmp_path)])  # the test's data folder is the platform's
    (out / "request.json").write_text(request.model_dump_json())
    code = stored_code(spec.code_dir(), tmp_path / "store")
    started = time.monotonic()
    assert runner.submit(run_id, str(out / "request.json"), code) is True
    assert _wait(runner, run_id) == "SUCCEEDED", runner.logs_tail(run_id)
    took = time.monotonic() - started
    result = SweepResult.model_validate_json((out / "result.json").read_text())

    nodes = _alive_nodes()
    by_id = {node["NodeID"]: name for name, node in nodes.items()}
    assert runner.driver_node(run_id) == nodes["head"]["NodeID"]  # the driver stays on the head
    assert len(result.trials) == 8 and all(t.node_id in by_id for t in result.trials), result.trials
    used = {t.node_id for t in result.trials}
    assert len(used) == 2, f"all trials ran on {used}"
    assert result.best.node_id in used and all("streamtune_node_id" not in t.metrics for t in result.trials)
    lineage = _lineage(RunRecord(run_id=run_id, spec_name=spec.name, dataset="sales"), result, spec)
    assert lineage["node_id"] == result.best.node_id and lineage["trial_id"] == result.best.trial_id
    assert lineage["trial_nodes"] == {t.trial_id: t.node_id for t in result.trials}
    per_node = {by_id[n]: sum(t.node_id == n for t in result.trials) for n in used}
    figures = {"trials_per_node": per_node, "best": by_id[result.best.node_id],
               "node_ids": {by_id[n]: n for n in used}, "sweep_s": round(result.timings["sweep_s"], 1),
               "job_s": round(took, 1)}
    print(f"\n[two-node sweep] {json.dumps(figures)}")


@pytest.fixture
def spread_service(ray_services: Any) -> Any:
    code_uri = stored_code(TESTJOBS, Path(tempfile.mkdtemp(prefix="testjobs-code-")))
    spec = ServeSpec(app=APP, replicas=2, num_cpus=0.25, max_replicas_per_node=1)
    svc = ModelService(APP, spec, "testjobs.const_job:ConstJob", code_uri, http_port=ray_services.serve_port)
    svc.deploy()
    try:
        yield svc
    finally:
        svc.delete()  # the nodes' CPUs are shared by the session: leftover replicas starve later trials


def _replica_nodes(app: str) -> list[str]:
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
    return sorted(a.node_id for a in actors if a.class_name.startswith(f"ServeReplica:{app}:"))


def test_replicas_spread_one_per_node_and_a_swap_under_load_flips_both(spread_service: ModelService,
                                                                       tmp_path: Path) -> None:
    from test_serving_swap import ROWS, Load, make_artifact

    nodes = _alive_nodes()
    by_id = {node["NodeID"]: name for name, node in nodes.items()}
    replica_nodes = _replica_nodes(APP)
    assert len(replica_nodes) == 2 and {by_id[n] for n in replica_nodes} == {"head", "w1"}, replica_nodes
    first = spread_service.swap(1, make_artifact(tmp_path, "v1", 1.0))
    assert (first.version, first.replicas) == (1, 2)
    with Load(spread_service.url) as load:
        time.sleep(0.8)
        swap_started = time.monotonic()
        report = spread_service.swap(2, make_artifact(tmp_path, "v2", 2.0, load_sleep_s=1.0))
        swap_done = time.monotonic()
        time.sleep(1.0)
    figures = {"load_s": report.load_s, "flip_s": report.flip_s, "total_s": report.total_s,
               "replicas": report.replicas, "requests": len(load.records), "failures": len(load.failures()),
               "replica_nodes": {by_id[n]: n for n in replica_nodes}}
    print(f"\n[two-node swap v1->v2 under load] {json.dumps(figures)}")
    assert load.failures() == []
    assert (report.version, report.previous, report.replicas) == (2, 1, 2)
    assert set(load.versions(ended_before=swap_started)) == {1}
    after = load.versions(started_after=swap_done)
    assert set(after) == {2} and after[2] > 0
    board = spread_service.status().board
    assert board is not None and len(board.live_replicas) == 2
    assert all(replica.active == 2 for replica in board.live())
    assert _replica_nodes(APP) == replica_nodes  # the swap flipped the replicas in place, on both nodes
    assert spread_service.predict(ROWS)["version"] == 2
