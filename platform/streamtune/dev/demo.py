"""``streamtune demo``: the whole loop on embedded services, from event to hot-swap under load.

1. Start a local Kafka broker, a local Ray with Serve, and the controller.
2. Write a first batch of synthetic sales data as Parquet; publish data-arrival events. A sweep runs;
   the winner is gated, registered and served as v1.
3. Start a load generator against the Serve app. Write a drifted second batch and publish it. A retrain
   runs; the challenger beats v1 on the same holdout and is hot-swapped to v2 while requests flow.
4. Print a summary. Fail (non-zero exit) if a stage failed, v2 is not serving, or any request failed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streamtune.config.jobspec import JobSpec, load_jobspec
from streamtune.config.settings import Settings
from streamtune.dev.loadgen import LoadGenerator
from streamtune.dev.synthetic import write_batch
from streamtune.events.schema import DataArrival
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.sdk.client import Client

SAMPLE_ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1}


def _publish_batch(client: Client, spec: JobSpec, folder: Path, *, drift: float, seed: int) -> list[str]:
    uris = write_batch(folder, files=4, rows_per_file=spec.trigger.min_rows // 4 + 50, drift=drift, seed=seed)
    import pyarrow.parquet as pq

    events = [DataArrival(dataset=spec.dataset.name, uris=[u], num_rows=pq.ParquetFile(u).metadata.num_rows)
              for u in uris]
    client.publish(events, spec.trigger.topic)
    return [e.event_id for e in events]


def _wait(client: Client, console: Console, event_ids: list[str], label: str, timeout_s: float) -> RunRecord:
    with console.status(f"[bold]{label}[/]: waiting for the trigger") as status:
        def changed(run: RunRecord) -> None:
            status.update(f"[bold]{label}[/]: run {run.run_id} is {run.status.value}")
            console.log(f"{label}: run {run.run_id} -> {run.status.value}")
        return client.wait(event_ids=event_ids, timeout_s=timeout_s, on_change=changed)


def run_demo(settings: Settings | None = None, *, spec_path: str | Path = "configs/demo.yaml",
             console: Console | None = None, timeout_s: float = 600) -> dict[str, Any]:
    """Run the demo and return its summary; ``summary["ok"]`` says whether every check passed."""
    console = console or Console()
    settings = settings or Settings.from_env()
    spec = load_jobspec(spec_path)
    t0 = time.perf_counter()
    with console.status("starting local Kafka, Ray and Serve"):
        client = Client.local(settings)
    services_s = time.perf_counter() - t0
    console.log(f"services up in {services_s:.1f}s (Kafka {settings.bootstrap}, Serve :{settings.serve_port})")
    try:
        return _loop(client, spec, settings, console, services_s, timeout_s)
    finally:
        with console.status("stopping services"):
            client.close()


def _loop(client: Client, spec: JobSpec, settings: Settings, console: Console, services_s: float,
          timeout_s: float) -> dict[str, Any]:
    client.submit(spec, reason="demo")
    data_dir = settings.home / "data" / spec.dataset.name / f"demo-{int(time.time())}"
    console.log(f"batch 1: writing Parquet under {data_dir} and publishing data-arrival events to "
                f"{spec.trigger.topic}")
    ids1 = _publish_batch(client, spec, data_dir / "batch-1", drift=0.0, seed=1)
    run1 = _wait(client, console, ids1, "batch 1", timeout_s)
    url = settings.serve_url(spec.serve.app)
    load = LoadGenerator(url, {"rows": [SAMPLE_ROW]}, threads=2, max_s=timeout_s)
    runs = [run1]
    if run1.status == RunStatus.PROMOTED:
        console.log(f"v{run1.model_version} serving; load generator started against {url}")
        load.start()
        time.sleep(1.0)
        console.log("batch 2 (drifted): publishing; the retrain is hot-swapped in while requests flow")
        ids2 = _publish_batch(client, spec, data_dir / "batch-2", drift=1.0, seed=2)
        runs.append(_wait(client, console, ids2, "batch 2", timeout_s))
        time.sleep(1.5)  # keep the load on after the flip
    stats = load.stop() if load._workers else load.stats()
    summary = _summary(client, spec, runs, stats, services_s)
    _print(console, summary)
    path = settings.home / "demo-summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    console.log(f"summary written to {path}")
    return summary


def _summary(client: Client, spec: JobSpec, runs: list[RunRecord], load: dict[str, Any],
             services_s: float) -> dict[str, Any]:
    versions = []
    for run in runs:
        sweep, gate = run.sweep or {}, run.gate or {}
        versions.append({
            "run_id": run.run_id, "status": run.status.value, "version": run.model_version,
            "rows": run.num_rows, "trigger": run.reason, "error": run.error,
            "best_params": (sweep.get("best") or {}).get("params"),
            "valid_metric": ((sweep.get("best") or {}).get("metrics") or {}).get(spec.sweep.metric),
            "trials": len(sweep.get("trials") or []), "gate": gate.get("numbers"), "gate_passed": gate.get("passed"),
            "gate_reasons": gate.get("reasons"),
            "timings": {k: round(v, 4) for k, v in run.timings.items() if k.endswith("_s")},
        })
    champion = client.champion(spec.name)
    ok = (len(runs) == 2 and all(r.status == RunStatus.PROMOTED for r in runs) and load["failed"] == 0
          and champion is not None and champion.version == runs[-1].model_version
          and load["last_version"] == str(runs[-1].model_version))
    return {"ok": ok, "services_s": round(services_s, 2), "metric": spec.sweep.metric, "versions": versions,
            "serving": {"champion": champion.version if champion else None, **load}}


def _print(console: Console, summary: dict[str, Any]) -> None:
    console.rule(f"streamtune demo summary (metric: {summary['metric']}, lower is better)")
    for v in summary["versions"]:
        _print_version(console, v)
    s = summary["serving"]
    console.print(f"[bold]serving[/]: {s['requests']} requests, {s['failed']} failed, by version {s['versions']}, "
                  f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms; champion now v{s['champion']}")
    console.print(f"services started in {summary['services_s']} s")
    console.print("[bold green]demo ok[/]" if summary["ok"] else "[bold red]demo FAILED[/]")


def _print_version(console: Console, v: dict[str, Any]) -> None:
    g, t = v["gate"] or {}, v["timings"]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    params = ", ".join(f"{k}={val:.3g}" if isinstance(val, float) else f"{k}={val}"
                       for k, val in (v["best_params"] or {}).items())
    table.add_row("run", f"{v['run_id']} ({v['status']}, {v['rows']} rows, window closed on {v['trigger']})")
    table.add_row("sweep", f"{v['trials']} trials; best {params}; valid {_f(v['valid_metric'])}")
    ci = f"; paired bootstrap CI of the gain [{_f(g['bootstrap_low'])}, {_f(g['bootstrap_high'])}]" \
        if g.get("bootstrap_low") is not None else ""
    table.add_row("gate", f"{'pass' if v['gate_passed'] else 'FAIL'}: challenger {_f(g.get('challenger'))} vs "
                          f"champion {_f(g.get('champion'))} on the same {g.get('holdout_rows', '-')}-row holdout{ci}")
    table.add_row("stages (s)", f"window {_f(t.get('window_s'))} | sweep job {_f(t.get('sweep_job_s'))} "
                                f"(tune {_f(t.get('sweep_s'))}, holdout eval {_f(t.get('holdout_eval_s'))}) | "
                                f"gate {_f(t.get('gate_s'))} | register {_f(t.get('register_s'))} | "
                                f"swap load {_f(t.get('swap_load_s'))}, flip {_f(t.get('swap_flip_s'))}")
    if v["error"]:
        table.add_row("[red]error[/]", v["error"])
    console.print(f"[bold]v{v['version']}[/]" if v["version"] else f"[bold]{v['status']}[/]")
    console.print(table)


def _f(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "-"
