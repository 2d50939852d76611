"""Hot-swap under load: plain Ray Serve redeploy vs streamtune's in-place swap, same model, same process.

Both apps serve the same LightGBM model with 2 replicas on 127.0.0.1 while 4 client threads POST JSON. The
baseline swaps v1 -> v2 by ``serve.run`` with a new artifact argument (a redeploy: new replicas start and
load, old ones drain); streamtune writes the target on its VersionBoard and replicas flip in place.
Prints one JSON object with both sides and the ratios.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pyarrow as pa  # noqa: E402
import ray  # noqa: E402
import requests  # noqa: E402
from baselines.plain_serve import PlainModel  # noqa: E402  (the plain Serve baseline)
from ray import serve  # noqa: E402

from streamtune.config.jobspec import ServeSpec  # noqa: E402
from streamtune.dev.synthetic import make_sales  # noqa: E402
from streamtune.registry.manifest import write_manifest  # noqa: E402
from streamtune.serving import ModelService  # noqa: E402

ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1}
WARM_S, AFTER_S, THREADS = 4.0, 4.0, 4


class _Ctx:
    def __init__(self, train: pa.Table, folder: str) -> None:
        self.train = self.valid = train
        self.label, self.features, self.folder = "sales", [c for c in train.column_names if c != "sales"], folder

    def report(self, metrics: dict) -> None:
        pass

    def save_model(self, writer) -> None:
        writer(self.folder)
        write_manifest(self.folder)


def train_model(folder: Path, seed: int) -> str:
    from jobs.tabular_gbdt import Job

    folder.mkdir(parents=True)
    Job().train({"num_boost_round": 80, "report_every": 80, "num_leaves": 31}, _Ctx(make_sales(3000, seed=seed),
                                                                                     str(folder)))
    return str(folder)


class Load:
    def __init__(self, url: str) -> None:
        self.url, self.stop, self.lock = url, threading.Event(), threading.Lock()
        self.ok = self.err = 0
        self.lat: list[float] = []
        self.versions: dict[str, int] = {}
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(THREADS)]

    def work(self) -> None:
        s = requests.Session()
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                r = s.post(self.url, json={"rows": [ROW]}, timeout=10)
                good = r.status_code == 200
                v = str(r.json()["version"]) if good else None
            except Exception:
                good, v = False, None
            with self.lock:
                self.lat.append(time.perf_counter() - t)
                if good:
                    self.ok += 1
                    self.versions[v] = self.versions.get(v, 0) + 1
                else:
                    self.err += 1

    def run_around(self, swap) -> dict:
        for t in self.threads:
            t.start()
        time.sleep(WARM_S)
        with self.lock:
            ok_before, t_before = self.ok, time.perf_counter()
        result = swap()
        time.sleep(AFTER_S)
        self.stop.set()
        for t in self.threads:
            t.join()
        lat = sorted(self.lat)
        wall = time.perf_counter() - t_before
        return {"ok": self.ok, "failed": self.err, "versions": self.versions,
                "p50_ms": round(lat[len(lat) // 2] * 1000, 1),
                "p99_ms": round(lat[int(0.99 * (len(lat) - 1))] * 1000, 1),
                "rps_during_and_after_swap": round((self.ok - ok_before) / wall, 1), **result}


def steady_rps(url: str, seconds: float = 6.0) -> float:
    """Throughput with no swap going on."""
    load = Load(url)
    for t in load.threads:
        t.start()
    time.sleep(1.0)
    with load.lock:
        ok0 = load.ok
    time.sleep(seconds)
    with load.lock:
        ok1 = load.ok
    load.stop.set()
    for t in load.threads:
        t.join()
    return round((ok1 - ok0) / seconds, 1)


def deploy_both(port: int, v1: str) -> tuple[str, ModelService]:
    serve.run(PlainModel.bind(v1, "1"), name="plain", route_prefix="/plain")
    svc = ModelService("bench", ServeSpec(app="bench", replicas=2, num_cpus=0.25), "jobs.tabular_gbdt:Job",
                       ROOT / "jobs", port)
    svc.deploy()
    svc.swap(1, v1)
    return f"http://127.0.0.1:{port}/plain", svc


def interleaved_rps(plain_url: str, ours_url: str, rounds: int = 3) -> tuple[list[float], list[float]]:
    """Steady throughput of each app, measured in alternating windows so drift on the machine cancels out."""
    plain_rps, ours_rps = [], []
    for _ in range(rounds):
        plain_rps.append(steady_rps(plain_url, 4.0))
        ours_rps.append(steady_rps(ours_url, 4.0))
    return plain_rps, ours_rps


def swap_plain(url: str, v2: str) -> dict:
    def swap() -> dict:
        t0 = time.perf_counter()
        serve.run(PlainModel.bind(v2, "2"), name="plain", route_prefix="/plain")
        return {"swap_call_s": round(time.perf_counter() - t0, 3)}

    return Load(url).run_around(swap)


def swap_ours(svc: ModelService, v2: str) -> dict:
    def swap() -> dict:
        t0 = time.perf_counter()
        rep = svc.swap(2, v2)
        return {"swap_call_s": round(time.perf_counter() - t0, 3), "load_s": round(rep.load_s, 4),
                "flip_s": round(rep.flip_s, 4)}

    return Load(svc.url).run_around(swap)


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    v1, v2 = train_model(tmp / "v1", 1), train_model(tmp / "v2", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(ROOT / "jobs")]})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    plain_url, svc = deploy_both(port, v1)
    plain_rps, ours_rps = interleaved_rps(plain_url, svc.url)
    serve.delete("bench")  # swap each side alone, so neither swap competes with the other app for CPU
    base = {"steady_rps": plain_rps, **swap_plain(plain_url, v2)}
    serve.delete("plain")
    svc.deploy()
    svc.swap(1, v1)
    ours = {"steady_rps": ours_rps, **swap_ours(svc, v2)}
    svc.delete()
    serve.shutdown()
    ray.shutdown()
    result = json.dumps({
        "benchmark": "hot-swap under load (2 replicas, 4 HTTP client threads, LightGBM model)",
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "ray": ray.__version__, "platform": platform.platform()},
        "plain_serve_redeploy": base, "streamtune_in_place": ours,
        "ratios": {
            "swap_call_speedup_vs_redeploy": round(base["swap_call_s"] / ours["swap_call_s"], 1),
            "flip_after_load_s": ours["flip_s"],
            "steady_throughput_vs_plain_median": round(median(ours_rps) / median(plain_rps), 3),
            "failed_requests": {"plain": base["failed"], "streamtune": ours["failed"]},
        },
    }, indent=2)
    print(result)
    if len(sys.argv) > 1:  # Ray prints shutdown noise on stdout; the file holds the JSON alone
        Path(sys.argv[1]).write_text(result + "\n")


if __name__ == "__main__":
    main()
