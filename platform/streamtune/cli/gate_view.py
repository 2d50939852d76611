"""``streamtune runs --show RUN``: one run with its whole gate report, readably.

Example:
    >>> from rich.console import Console
    >>> from streamtune.registry.records import RunRecord, RunStatus
    >>> console = Console(width=120, record=True)
    >>> show_run(console, RunRecord(run_id="r-1", spec_name="s", dataset="d", status=RunStatus.PENDING))
    run r-1 of s: pending, 0 rows, trigger , version -
    no gate report yet
    >>> show_run(console, RunRecord(run_id="r-2", spec_name="s", dataset="d", status=RunStatus.RUNNING,
    ...                             sweep={"warnings": ["trials train on CPU (gpu 0)"]}))
    run r-2 of s: running, 0 rows, trigger , version -
    warning: trials train on CPU (gpu 0)
    no gate report yet
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streamtune.registry.records import RunRecord
from streamtune.validation.gate import GateReport


def gate_report(run: RunRecord) -> GateReport | None:
    """The run's stored gate report as the typed model (None before the gate ran or if it cannot be read)."""
    if not run.gate:
        return None
    try:
        return GateReport.model_validate(run.gate)
    except ValidationError:
        return None


def show_run(console: Console, run: RunRecord) -> None:
    """Print the run's headline, then each gate check, the bootstrap interval and the slices."""
    state = run.status.value if run.attempt == 1 else f"{run.status.value} (attempt {run.attempt})"
    console.print(f"[bold]run {run.run_id}[/] of {run.spec_name}: {state}, {run.num_rows} rows, "
                  f"trigger {run.reason}, version {run.model_version or '-'}", highlight=False)
    if run.error:
        console.print(f"[red]error:[/] {run.error}", highlight=False)
    for warning in (run.sweep or {}).get("warnings") or []:  # e.g. a GPU request that trained on CPU
        console.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
    report = gate_report(run)
    if report is None:
        console.print("no gate report yet" if not run.gate else f"gate (unreadable): {run.gate}", highlight=False)
        return
    verdict = "[bold green]passed[/]" if report.passed else "[bold red]rejected[/]"
    n = report.numbers
    console.print(f"gate {verdict}: {n.get('metric')} challenger {_f(n.get('challenger'))} vs champion "
                  f"{_f(n.get('champion'))} on the same {n.get('holdout_rows', '-')}-row holdout", highlight=False)
    checks = Table("check", "result", "value", "limit", "reason", title="checks", title_justify="left")
    for c in report.checks:
        checks.add_row(c.name, "[green]pass[/]" if c.passed else "[red]FAIL[/]", _f(c.value), _f(c.limit), c.reason)
    if report.smoke is not None:
        checks.add_row("smoke", "[green]pass[/]" if report.smoke.passed else "[red]FAIL[/]", "", "",
                       report.smoke.reason)
    console.print(checks)
    ci = report.bootstrap
    if ci is not None:
        console.print(f"paired bootstrap: gain {_f(ci.gain)} in {ci.metric}, {ci.confidence:.0%} CI "
                      f"[{_f(ci.low)}, {_f(ci.high)}], {ci.resamples} resamples of {ci.rows} rows (seed {ci.seed}); "
                      f"lower end must exceed {_f(ci.required)}: "
                      f"{'significant' if ci.significant else 'not significant'}",
                      highlight=False, markup=False)
    if report.slices:
        slices = Table("slice", "column", "rows", "challenger", "champion", "regression", "max", "result",
                       title="slices", title_justify="left")
        for s in report.slices:
            slices.add_row(s.name, s.column, str(s.rows), _f(s.challenger), _f(s.champion), _pct(s.regression),
                           _pct(s.max_regression), "[green]pass[/]" if s.passed else "[red]FAIL[/]")
        console.print(slices)
    if report.data_gate is not None:
        console.print(f"data gate: {'passed' if report.data_gate.passed else 'failed'}", highlight=False)


def _f(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"
