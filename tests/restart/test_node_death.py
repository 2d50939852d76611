"""A worker node dies mid-sweep, on a ``streamtune up --workers 1`` cluster of its own (head + worker node):

- ``up --workers 1`` starts both nodes, each with its own ports; ``down`` stops every node;
- while a run's trials run on both nodes, the worker node's raylet and everything under it get SIGKILL; with
  node-death detection made short (RAY_health_check_* on every node), the run ends within a bounded time on
  the head alone: its sweep keeps the surviving trials (a lost trial is recorded with the error that names
  its node), or it fails with a reason. It never hangs.

This process never joins the cluster (a joined Ray keeps its token for the process's life, and
test_restart.py joins a cluster of its own later): it finds the nodes through ``<home>/ray/nodes.json``, the
raylets' command lines and the dashboard's HTTP API.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml
from test_restart import ROOT, Stack

from streamtune import DataArrival, JobSpec, RunStatus
from streamtune.dev.synthetic import write_batch
from streamtune.embedded.ray import read_nodes

# The GCS health-checks each raylet every 500 ms and gives up after 3 misses: a dead node is noticed in ~2 s
# (Ray's defaults: 3 s x 5 plus a 10 s timeout).
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                   "RAY_health_check_failure_threshold": "3"}
ROWS_PER_FILE = 3000
RUN_TIMEOUT_S = 240


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline.strip())
    return found


def _raylets() -> dict[int, str]:
    """pid -> command line of every raylet on this machine."""
    return {pid: cmd for pid, (_, cmd) in _processes().items() if "/raylet/raylet " in cmd}


def _raylet_of(port: int) -> int:
    pids = [pid for pid, cmd in _raylets().items() if f"--node_manager_port={port} " in f"{cmd} "]
    assert len(pids) == 1, f"no single raylet with node manager port {port}: {_raylets()}"
    return pids[0]


def _node_id(raylet_cmd: str) -> str:
    return raylet_cmd.split("--node_id=", 1)[1].split()[0]


def _descendants(pid: int) -> list[int]:
    procs = _processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in procs.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _trials_under(raylet: int) -> list[str]:
    """Titles of the Tune trial actors running under a raylet (``ray::ImplicitFunc...``)."""
    procs = _processes()
    return [procs[p][1] for p in _descendants(raylet) if p in procs and procs[p][1].startswith("ray::ImplicitFunc")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    s = Stack(tmp_path_factory.mktemp("node-death-home"))
    s.env.update(FAST_NODE_DEATH)
    s.cli("up", "--workers", "1")
    try:
        yield s
    finally:
        s.cli("down", timeout=120)
        assert _raylets() == {}, f"`streamtune down` left raylets running: {_raylets()}"


def test_up_with_a_worker_starts_two_nodes_on_ports_of_their_own_and_down_stops_both(stack: Stack) -> None:
    nodes = {node.name: node for node in read_nodes(stack.settings)}
    assert set(nodes) == {"head", "w1"}
    worker = _raylet_of(nodes["w1"].ports["node-manager-port"])
    assert len(_raylets()) == 2
    command = _raylets()[worker]
    for flag in ("object_manager_port", "min_worker_port", "max_worker_port"):
        assert f"--{flag}={nodes['w1'].ports[flag.replace('_', '-')]}" in command
    stack.cli("down")
    assert _raylets() == {}, "`streamtune down` left a node running"
    stack.cli("up", "--workers", "1")
    assert len(_raylets()) == 2


def _spec() -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(base_dir=str(ROOT / "configs"))
    data["trigger"].update(min_rows=2 * ROWS_PER_FILE)
    data["sweep"].update(num_samples=8, max_concurrent=4)  # 4 trials at once: 2 CPUs per node, both nodes busy
    data["job"]["params"].update(num_boost_round=300, report_every=50)  # 6 reports (max_t), a few seconds each
    return JobSpec.parse(data)


def _wait_for_trials_on_both(stack: Stack, head: int, worker: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not (_trials_under(worker) and _trials_under(head)):
        assert time.monotonic() < deadline, f"no trials on both nodes:\n{stack.controller_log()[-2000:]}"
        time.sleep(0.1)


def _dead_after(stack: Stack, node_id: str, since: float, timeout_s: float = 60) -> float:
    """Seconds from ``since`` until the dashboard reports ``node_id`` dead."""
    token = (stack.home / "ray" / "auth_token").read_text().strip()
    url = f"{stack.settings.jobs_url}/api/v0/nodes?limit=100&detail=true"
    while time.monotonic() - since < timeout_s:
        try:
            nodes = requests.get(url, headers={"authorization": f"Bearer {token}"}, timeout=5).json()
            states = {n["node_id"]: n["state"] for n in nodes["data"]["result"]["result"]}
            if states.get(node_id) == "DEAD":
                return time.monotonic() - since
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"node {node_id} was not reported dead within {timeout_s}s")


def test_a_worker_node_killed_mid_sweep_ends_the_run_on_the_head(stack: Stack) -> None:
    nodes = {node.name: node for node in read_nodes(stack.settings)}
    worker = _raylet_of(nodes["w1"].ports["node-manager-port"])
    head = next(pid for pid in _raylets() if pid != worker)
    worker_node, head_node = _node_id(_raylets()[worker]), _node_id(_raylets()[head])
    client = stack.client()
    spec = _spec()
    client.submit(spec, reason="node death test")
    uris = write_batch(stack.home / "data" / "kill", files=2, rows_per_file=ROWS_PER_FILE, drift=0.0, seed=21)
    events = [DataArrival(dataset="sales", uris=[u], num_rows=ROWS_PER_FILE) for u in uris]
    published = time.monotonic()
    client.publish(events, spec.trigger.topic)
    _wait_for_trials_on_both(stack, head, worker)
    on_worker = _trials_under(worker)
    victims = [worker, *_descendants(worker)]
    killed = time.monotonic()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    dead_s = _dead_after(stack, worker_node, killed)
    run = client.wait(event_ids=[e.event_id for e in events], timeout_s=RUN_TIMEOUT_S)
    ended_s = time.monotonic() - killed
    sweep = run.sweep or {}
    trials = sweep.get("trials", [])
    lost = [t for t in trials if t.get("error")]
    summary = {
        "status": run.status.value, "error": (run.error or "")[:300],
        "killed_after_publish_s": round(killed - published, 1),
        "worker_trials_at_kill": len(on_worker), "processes_killed": len(victims),
        "node_dead_after_s": round(dead_s, 1), "run_ended_after_kill_s": round(ended_s, 1),
        "trials": len(trials), "trials_per_node": {n: sum(t.get("node_id") == n for t in trials)
                                                   for n in (head_node, worker_node)},
        "lost_trials": [t["error"][:240] for t in lost],
        "best_node": (sweep.get("best") or {}).get("node_id"), "head": head_node, "worker": worker_node,
        "failed_attempts": [a.error[:240] for a in run.attempts],
    }
    print(f"\n[worker node killed mid-sweep] {json.dumps(summary, indent=1)}")
    assert ended_s < RUN_TIMEOUT_S
    if run.status is RunStatus.FAILED:  # allowed, with a reason that says what was lost
        assert run.error and ("node" in run.error.lower() or "trial" in run.error.lower()), run.error
        return
    assert run.status in (RunStatus.PROMOTED, RunStatus.REJECTED), run.error
    if run.attempts:  # the node's death failed the attempt; the retry (a new Ray Job) ran on the head alone
        assert run.attempt >= 2 and all(a.error for a in run.attempts), run.attempts
        assert all(t.get("node_id") == head_node for t in trials), summary
        return
    if not lost:  # the kill found the worker's trial actor still starting: Tune placed that trial on the head
        assert all(t.get("node_id") == head_node for t in trials), summary
        assert sweep["best"]["artifact_uri"] and sweep["best"]["node_id"] == head_node, summary
        client.close()
        return
    for trial in lost:  # only the worker's trials were lost, each with the reason and the node
        # Ray says "its node has died", or (the actor became unavailable first) streamtune says the node has died
        assert trial["node_id"] == worker_node, trial
        assert "its node has died" in trial["error"] or f"{worker_node}, which has died" in trial["error"], trial
    assert sweep["best"]["artifact_uri"] and sweep["best"]["trial_id"] not in {t["trial_id"] for t in lost}
    if run.status is RunStatus.PROMOTED:
        model = client.champion(spec.name)
        assert model is not None
        assert model.lineage["trial_nodes"] == {t["trial_id"]: t.get("node_id") for t in trials}
        assert model.lineage["node_id"] == sweep["best"]["node_id"]
    client.close()
