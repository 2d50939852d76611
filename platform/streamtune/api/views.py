"""Pure view helpers of the status page: what a run, its trigger, gate, sweep and drift look like on a page.

They read the typed records the control plane returns and never touch a service, so they are tested without one.

Example:
    >>> from streamtune.registry.records import RunRecord
    >>> run = RunRecord(run_id="r-1", spec_name="s", dataset="d", reason="min_rows", gate={
    ...     "passed": True, "reasons": ["ok"], "numbers": {"metric": "rmse", "challenger": 1.2, "champion": 1.5}})
    >>> gate_headline(run)
    'passed: rmse 1.2 vs champion 1.5'
    >>> trigger_summary(run), drift_table(trigger_details(run)) is None
    ('min_rows', True)
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamtune.registry.records import AliasEvent, RunRecord
from streamtune.sweeps.schema import SweepResult
from streamtune.validation.data_gate import DataGateReport
from streamtune.validation.gate import GateReport

_DRIFT_KEYS = ("drift", "features", "per_feature")
_TUNE_KEYS = frozenset({
    "date", "done", "experiment_tag", "hostname", "node_ip", "pid", "timestamp", "time_this_iter_s", "time_total_s",
    "time_since_restore", "iterations_since_restore", "trial_id", "training_iteration", "checkpoint_dir_name",
    "should_checkpoint", "config",
})


class DriftTable(BaseModel):
    """Per-feature drift values of one run's trigger, as a table."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] = Field(description="Value columns after the feature's name (e.g. psi, threshold).")
    rows: list[tuple[str, list[str]]] = Field(description="(feature, one formatted value per column).")
    drifted: list[str] = Field(default_factory=list, description="Features the trigger marked as drifted.")


def num(value: Any) -> str:
    """A number in 4 significant digits; anything else as text; None as "-".

    Example:
        >>> num(1.234567), num(3), num(None), num("x"), num(True)
        ('1.235', '3', '-', 'x', 'True')
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A trial's own metrics: numbers it reported, without Tune's bookkeeping (date, hostname, timings...).

    Example:
        >>> trial_metrics({"rmse": 2.5, "date": "2026-11-26", "hostname": "vm", "training_iteration": 3, "ok": True})
        {'rmse': 2.5}
    """
    return {k: v for k, v in metrics.items()
            if k not in _TUNE_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def when(ts: float | None) -> str:
    """A Unix time as UTC ``YYYY-MM-DD HH:MM:SS``; None as "-".

    Example:
        >>> when(0), when(None)
        ('1970-01-01 00:00:00', '-')
    """
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def as_json(value: Any) -> str:
    """Pretty JSON for a ``<pre>`` block (the template escapes it).

    Example:
        >>> as_json({"b": 1, "a": [1, 2]})
        '{\\n  "a": [\\n    1,\\n    2\\n  ],\\n  "b": 1\\n}'
    """
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def trigger_details(run: RunRecord) -> dict[str, Any] | None:
    """The run's trigger details (``RunRecord.trigger_detail``: rows, wait, drift per feature, schedule, replay...),
    as JSON without empty fields; None when the run recorded none."""
    details = getattr(run, "trigger_detail", None) or getattr(run, "trigger", None)
    if isinstance(details, BaseModel):
        details = details.model_dump(mode="json", exclude_none=True)
    return details if isinstance(details, dict) and details else None


def trigger_summary(run: RunRecord) -> str:
    """Why the run started: its reason, with the trigger's short scalar details when it recorded any.

    Example:
        >>> trigger_summary(RunRecord(run_id="r", spec_name="s", dataset="d", reason="manual"))
        'manual'
    """
    details = trigger_details(run) or {}
    scalars = [f"{k}={num(v)}" for k, v in details.items() if isinstance(v, (str, int, float, bool)) and k != "kind"]
    reason = run.reason or str(details.get("kind", "")) or "-"
    return f"{reason} ({', '.join(scalars[:4])})" if scalars else reason


def gate_report(run: RunRecord) -> GateReport | None:
    """The run's stored gate report, typed; None before the gate ran or when only the data gate wrote one."""
    if not run.gate or "passed" not in run.gate:
        return None
    try:
        return GateReport.model_validate(run.gate)
    except ValidationError:
        return None


def data_gate_report(run: RunRecord) -> DataGateReport | None:
    """The data gate's report on the run's snapshot (stored alone when it failed the run), typed; else None."""
    report = gate_report(run)
    if report is not None:
        return report.data_gate
    try:
        return DataGateReport.model_validate((run.gate or {}).get("data_gate"))
    except ValidationError:
        return None


def gate_headline(run: RunRecord) -> str:
    """One line: the gate's verdict with the metric, or the data gate's failure, or "-" before any gate.

    Example:
        >>> gate_headline(RunRecord(run_id="r", spec_name="s", dataset="d", gate={"data_gate": {"passed": False}}))
        'data gate failed'
    """
    report = gate_report(run)
    if report is None:
        data_gate = (run.gate or {}).get("data_gate")
        if isinstance(data_gate, dict) and data_gate.get("passed") is False:
            return "data gate failed"
        return "-"
    n = report.numbers
    if report.passed:
        return f"passed: {n.get('metric')} {num(n.get('challenger'))} vs champion {num(n.get('champion'))}"
    failed = report.failed()
    return "rejected: " + (failed[0].reason if failed else (report.reasons[0] if report.reasons else "-"))


def sweep_result(run: RunRecord) -> SweepResult | None:
    """The run's sweep result, typed; None while the sweep runs or if it cannot be read."""
    if not run.sweep:
        return None
    try:
        return SweepResult.model_validate(run.sweep)
    except ValidationError:
        return None


def drift_table(details: dict[str, Any] | None) -> DriftTable | None:
    """The per-feature drift values in a run's trigger details, as a table; None when they hold none.

    Reads ``{"drift": {feature: value}, "drift_method": "psi", "threshold": 0.2}`` (a drift trigger's detail: a
    feature past the threshold is marked drifted) or ``{"features": {feature: {"psi": .., "drifted": ..}}}``.

    Example:
        >>> table = drift_table({"kind": "drift", "drift": {"price": 0.31, "temp": 0.05}, "drift_method": "psi",
        ...                      "threshold": 0.2})
        >>> table.columns, table.rows[0], table.drifted
        (['psi', 'threshold', 'drifted'], ('price', ['0.31', '0.2', 'True']), ['price'])
    """
    details = details or {}
    features = next((details[k] for k in _DRIFT_KEYS if isinstance(details.get(k), dict) and details[k]), None)
    if features is None:
        return None
    cells = {str(name): _drift_cells(value, details) for name, value in features.items()}
    columns: list[str] = []
    for row in cells.values():
        columns += [key for key in row if key not in columns]
    rows = [(name, [num(row.get(c)) for c in columns]) for name, row in cells.items()]
    return DriftTable(columns=columns, rows=rows, drifted=[n for n, row in cells.items() if row.get("drifted") is True])


def _drift_cells(value: Any, details: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    threshold = details.get("threshold")
    cells: dict[str, Any] = {str(details.get("drift_method") or "value"): value}
    if isinstance(threshold, (int, float)) and isinstance(value, (int, float)):
        cells.update(threshold=threshold, drifted=value > threshold)
    return cells


def current_aliases(history: list[AliasEvent]) -> dict[str, int]:
    """Where each alias points now, from its history (oldest first); removed aliases are left out.

    Example:
        >>> events = [AliasEvent(name="m", alias="champion", version=1), AliasEvent(name="m", alias="champion",
        ...           version=2, previous=1), AliasEvent(name="m", alias="challenger", version=3),
        ...           AliasEvent(name="m", alias="challenger", version=None, previous=3)]
        >>> current_aliases(events)
        {'champion': 2}
    """
    now: dict[str, int | None] = {}
    for event in history:
        now[event.alias] = event.version
    return {alias: version for alias, version in now.items() if version is not None}
