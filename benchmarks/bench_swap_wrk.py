"""Swaps under ``wrk``, driven from the HTTP API, against plain Ray Serve on the same LightGBM model.

One Ray (2 CPUs) with Serve, one embedded Kafka broker, a real ``Controller`` thread on SQLite and its HTTP API
(``start_api``). The spec is paused (no sweeps); versions 1 and 2 are registered with their manifest digests.
Every swap is a ``POST /v1/commands`` promote, polled with ``GET /v1/commands/{id}``, as a remote user does it.

Measured with ``wrk`` (1 thread, 4 connections, POST of one row):

- steady throughput and p99, interleaved windows (streamtune's endpoint checks the API token, as it does
  with ``auth: token``; plain Serve checks nothing): plain Serve (``baselines/plain_serve.PlainModel``), the
  same with ``@serve.batch`` (``BatchedPlainModel``), streamtune;
- p99 of streamtune while promote commands swap v1 <-> v2 back to back, against a steady window of the same
  length just before;
- per swap: ``flip_s`` (flip after load on every replica until every replica acked: loaded-on-all to 100 %
  of traffic), ``load_s``, the command's round trip.

Run (holds the machine's Ray lock): ``flock /tmp/streamtune-ray.lock .venv/bin/python
benchmarks/bench_swap_wrk.py benchmarks/results/swap-wrk-2core-vm.json``
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import ray  # noqa: E402
import requests  # noqa: E402
from baselines.plain_serve import BatchedPlainModel, PlainModel  # noqa: E402
from bench_swap import ROW, train_model  # noqa: E402
from ingest_latency import _free_port_pair  # noqa: E402
from ray import serve  # noqa: E402
from stand_ins import NoJobs  # noqa: E402

from streamtune import Settings  # noqa: E402
from streamtune.api.auth import hash_token, new_token  # noqa: E402
from streamtune.api.server import start_api  # noqa: E402
from streamtune.artifacts import ArtifactStore, pack_code, store_code, stored_manifest_sha256  # noqa: E402
from streamtune.config import load_jobspec  # noqa: E402
from streamtune.controller import Controller  # noqa: E402
from streamtune.embedded.kafka import LocalKafka  # noqa: E402
from streamtune.registry import open_registry  # noqa: E402
from streamtune.serving.hub import ServeHub  # noqa: E402

WINDOW_S, SWAP_WINDOW_S, ROUNDS, SWAP_GAP_S = 6, 20, 3, 0.5
LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
%s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "connect": %%d, ' ..
    '"read": %%d, "write": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, seconds: float, script: Path) -> dict[str, Any]:
    """One ``wrk`` window; its summary with rps and milliseconds."""
    out = subprocess.run(["wrk", "-t1", "-c4", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"WRKJSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"wrk printed no summary: {out}")
    raw = json.loads(match.group(1))
    errors = raw["non2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    rps = round(raw["requests"] / (raw["duration_us"] / 1e6), 1)
    return {"requests": raw["requests"], "failed": errors, "rps": rps,
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000}


class Api:
    """The remote user's side: promote commands over HTTP with a token."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.session = url, requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def promote(self, model: str, version: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        r = self.session.post(f"{self.url}/v1/commands", timeout=30, json={
            "command": {"kind": "promote", "model": model, "version": version}, "reason": "bench"})
        r.raise_for_status()
        command_id = r.json()["id"]
        while True:
            record = self.session.get(f"{self.url}/v1/commands/{command_id}", timeout=30).json()
            if record["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.02)
        if record["status"] != "succeeded":
            raise RuntimeError(f"promote v{version} failed: {record['error']}")
        swap = record["outcome"]["swap"]
        return {"version": version, "command_s": round(time.perf_counter() - t0, 3), "load_s": swap["load_s"],
                "flip_s": swap["flip_s"], "swap_total_s": swap["total_s"]}


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="st-bench-wrk-"))
    script, authed = home / "post.lua", home / "post-token.lua"
    script.write_text(LUA % (json.dumps({"rows": [ROW]}), ""))
    v1, v2 = train_model(home / "m1", 1), train_model(home / "m2", 2)
    port = free_port()
    settings = Settings(home=home, serve_port=port, api_port=free_port(), kafka_port=_free_port_pair(),
                        consumer_group=f"bench-{uuid.uuid4().hex[:6]}", lease_ttl=5)
    kafka = LocalKafka(settings)
    kafka.start()
    settings = settings.model_copy(update={"kafka_bootstrap": kafka.bootstrap})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(ROOT / "jobs")]})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    registry = open_registry(settings.registry_url)
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    code_uri = store_code(ArtifactStore.from_settings(settings), pack_code(ROOT / "jobs"))
    spec = spec.model_copy(update={
        "trigger": spec.trigger.model_copy(update={"topic": f"bench-{uuid.uuid4().hex[:6]}"}),
        "job": spec.job.model_copy(update={"code_uri": code_uri}),
        "serve": spec.serve.model_copy(update={"app": "bench"}),
    })
    registry.put_spec(spec)
    registry.set_spec_paused(spec.name, True)
    for i, uri in ((1, v1), (2, v2)):
        registry.register_model(spec.name, f"r-{i}", uri, {}, {}, {}, manifest_sha256=stored_manifest_sha256(uri))
    token = new_token()
    registry.add_token("bench", hash_token(token))  # the model endpoint then checks it on every request
    authed.write_text(LUA % (json.dumps({"rows": [ROW]}), f'wrk.headers["Authorization"] = "Bearer {token}"'))
    hub = ServeHub(port, connect=lambda: None)
    ctrl = Controller(settings, jobs=NoJobs(), services=hub)  # type: ignore[arg-type]
    ctrl.start()
    server = None
    try:
        assert ctrl.wait_until_active(30), "the controller never became active"
        server = start_api(settings, is_active=lambda: ctrl.active)
        api = Api(server.url, token)
        cold = api.promote(spec.name, 1)  # deploys the app, then swaps v1 in
        ours_url = hub.service(spec).url
        serve.run(PlainModel.bind(v1, "1"), name="plain", route_prefix="/plain")
        serve.run(BatchedPlainModel.bind(v1, "1"), name="plainbatch", route_prefix="/plainbatch")
        base = f"http://127.0.0.1:{port}"
        urls = {"plain_serve": f"{base}/plain", "plain_serve_batch": f"{base}/plainbatch", "streamtune": ours_url}
        scripts = {"plain_serve": script, "plain_serve_batch": script, "streamtune": authed}
        for name, url in urls.items():  # warm every path once; every answer must be a 200
            warm = wrk(url, 2, scripts[name])
            if warm["failed"]:
                raise RuntimeError(f"{name} answered {warm['failed']} of {warm['requests']} requests with errors")
        steady: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
        for _ in range(ROUNDS):  # interleaved, so drift on the machine hits every side alike
            for name, url in urls.items():
                steady[name].append(wrk(url, WINDOW_S, scripts[name]))
        serve.delete("plainbatch")
        serve.delete("plain")  # the swap phase has the machine to itself
        before = wrk(ours_url, SWAP_WINDOW_S, authed)
        swaps: list[dict[str, Any]] = []
        stop = threading.Event()

        def keep_swapping() -> None:
            version = 2
            time.sleep(1.0)
            while not stop.is_set():
                swaps.append(api.promote(spec.name, version))
                version = 3 - version
                time.sleep(SWAP_GAP_S)

        swapper = threading.Thread(target=keep_swapping, daemon=True)
        swapper.start()
        during = wrk(ours_url, SWAP_WINDOW_S, authed)
        stop.set()
        swapper.join(60)
        after = wrk(ours_url, SWAP_WINDOW_S, authed)
    finally:
        if server is not None:
            server.stop()
        ctrl.stop()
        registry.close()
        serve.shutdown()
        ray.shutdown()
        kafka.stop()
    rps = {k: [w["rps"] for w in v] for k, v in steady.items()}
    flips = sorted(s["flip_s"] for s in swaps)
    result = json.dumps({
        "benchmark": "wrk (1 thread, 4 connections, 1-row POST) on plain Serve, plain Serve + @serve.batch and "
                     "streamtune, same LightGBM model, 2 replicas x 0.25 CPU; streamtune swaps by POST "
                     "/v1/commands promote to a real controller",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "ray": ray.__version__, "wrk": subprocess.run(["wrk", "-v"], capture_output=True,
                                                                   text=True).stdout.split("\n")[0].strip(),
                    "platform": platform.platform()},
        "params": {"window_s": WINDOW_S, "rounds": ROUNDS, "swap_window_s": SWAP_WINDOW_S, "swap_gap_s": SWAP_GAP_S},
        "cold_promote": cold,
        "steady": steady,
        "swap_phase": {"steady_before": before, "during_swaps": during, "steady_after": after, "swaps": swaps},
        "figures": {
            "swaps_during_window": len(swaps),
            "flip_s_median": median(flips) if flips else None, "flip_s_max": flips[-1] if flips else None,
            "p99_during_swaps_vs_steady": round(during["p99_ms"] / before["p99_ms"], 2),
            "failed_requests_during_swaps": during["failed"],
            "failed_requests_steady": {k: sum(w["failed"] for w in v) for k, v in steady.items()},
            "steady_throughput_vs_plain_median": round(median(rps["streamtune"]) / median(rps["plain_serve"]), 3),
            "plain_batch_throughput_vs_plain_median": round(median(rps["plain_serve_batch"])
                                                            / median(rps["plain_serve"]), 3),
            "steady_p99_ms_median": {k: median([w["p99_ms"] for w in v]) for k, v in steady.items()},
        },
        "goals": {"flip_s": "<= 0.1", "p99_during_swaps_vs_steady": "<= 1.2", "steady_throughput_vs_plain": ">= 0.9"},
    }, indent=2)
    print(result)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(result + "\n")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
