"""The data gate: a run's snapshot is checked before any trial starts, and a bad batch never trains.

Checked against the JobSpec: each ``dataset.schema`` column's presence, Arrow type, nulls (``nullable``,
``max_null_fraction``) and range (``min``, ``max``); the label (present, no nulls, not constant); the feature
columns; ``validation.min_rows``; and the rows the window's events claimed (their ``num_rows``) against the
rows actually read. Each failed check names the column, the value and the rule.

Example:
    >>> import pyarrow as pa
    >>> from streamtune.config.jobspec import DatasetSpec, ValidationSpec
    >>> ds = DatasetSpec.model_validate({"name": "d", "label": "y",
    ...                                  "schema": {"x": {"type": "double"}, "y": {"type": "double"}}})
    >>> table = pa.table({"x": ["a", "b", "c"], "y": [1.0, 2.0, 3.0]})
    >>> report = check_data(table, ds, ValidationSpec(min_rows=1), claimed_rows=3)
    >>> report.passed, report.reasons[0]
    (False, 'column x: type string, but dataset.schema says double')
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from streamtune.config.jobspec import ColumnSpec, DatasetSpec, ValidationSpec
from streamtune.errors import DataError

__all__ = ["DataCheck", "DataGateFailed", "DataGateReport", "check_data"]


class DataCheck(BaseModel):
    """One check of the data gate."""

    model_config = ConfigDict(extra="forbid")

    rule: str = Field(description="What was checked, e.g. 'type', 'range', 'max_null_fraction', 'num_rows'.")
    column: str | None = Field(None, description="The column checked; None for a check of the whole snapshot.")
    passed: bool = Field(description="Whether the data met the rule.")
    detail: str = Field(description="One line naming the column, the value found and the rule.")


class DataGateReport(BaseModel):
    """The data gate's verdict on one snapshot, with every check."""

    model_config = ConfigDict(extra="forbid")

    passed: bool = Field(description="Whether the snapshot may be trained on.")
    reasons: list[str] = Field(description="One line per check, failed checks first.")
    checks: list[DataCheck] = Field(default_factory=list, description="Every check, in the order run.")
    rows: int = Field(ge=0, description="Rows actually read.")
    claimed_rows: int | None = Field(None, description="Rows the window's events claimed (their num_rows); None: "
                                     "not known.")

    @property
    def headline(self) -> str:
        """The failed checks on one line.

        Example:
            >>> DataGateReport(passed=False, reasons=["a", "b"], rows=0).headline
            'data gate failed: a; b'
        """
        failed = [c.detail for c in self.checks if not c.passed] or self.reasons
        return ("data gate failed: " if not self.passed else "data gate passed: ") + "; ".join(failed)


class DataGateFailed(DataError):
    """The snapshot failed the data gate; no trial was started. Another attempt would read the same data."""

    def __init__(self, report: DataGateReport) -> None:
        super().__init__(report.headline, fix="fix the batch at its source (or dataset.schema in the JobSpec); "
                                              "the report is stored with the run")
        self.report = report


_Add = Callable[[str, "str | None", bool, str], None]
_NUMERIC = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)


def check_data(table: pa.Table, dataset: DatasetSpec, validation: ValidationSpec, *,
               claimed_rows: int | None = None) -> DataGateReport:
    """Run every data check on ``table`` (the whole snapshot) and report; never raises for bad data."""
    checks: list[DataCheck] = []

    def add(rule: str, column: str | None, ok: bool, detail: str) -> None:
        checks.append(DataCheck(rule=rule, column=column, passed=ok, detail=detail))

    rows = table.num_rows
    add("min_rows", None, rows >= validation.min_rows,
        f"snapshot has {rows} rows; validation.min_rows is {validation.min_rows}")
    if claimed_rows is not None:
        add("num_rows", None, claimed_rows == rows,
            f"events claimed num_rows {claimed_rows} in total; {rows} rows were read"
            + ("" if claimed_rows == rows else " (the claim must match the data)"))
    names = set(table.column_names)
    for name, col in (dataset.schema_ or {}).items():
        if name not in names:
            add("present", name, False, f"column {name}: missing; dataset.schema declares it")
            continue
        _check_column(name, table[name], col, add)
    for name in dataset.features or ():
        if name not in names:
            add("present", name, False, f"column {name}: missing; it is in dataset.features")
    _check_label(table, dataset.label, add)
    failed = [c.detail for c in checks if not c.passed]
    ok = [c.detail for c in checks if c.passed]
    return DataGateReport(passed=not failed, reasons=failed + ok, checks=checks, rows=rows,
                          claimed_rows=claimed_rows)


def _check_column(name: str, column: pa.ChunkedArray, col: ColumnSpec, add: _Add) -> None:
    found = str(column.type)
    if found != col.type and not (pa.types.is_null(column.type) and col.nullable):
        add("type", name, False, f"column {name}: type {found}, but dataset.schema says {col.type}")
        return
    n = len(column)
    nulls = column.null_count
    if not col.nullable and nulls:
        add("nullable", name, False, f"column {name}: {nulls} nulls, but dataset.schema says nullable: false")
    if col.max_null_fraction is not None and n:
        share = nulls / n
        add("max_null_fraction", name, share <= col.max_null_fraction,
            f"column {name}: null fraction {share:.4g}; max_null_fraction is {col.max_null_fraction:g}")
    if (col.min is not None or col.max is not None) and n > nulls:
        if not any(test(column.type) for test in _NUMERIC):
            add("range", name, False, f"column {name}: min/max given for a {found} column; ranges need numbers")
            return
        bounds = pc.min_max(column)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        nan = pa.types.is_floating(column.type) and bool(pc.any(pc.is_nan(column)).as_py())
        if col.min is not None:
            good = low is not None and float(low) >= col.min and not nan
            add("range", name, good, f"column {name}: smallest value {low}{' (and NaN)' if nan else ''}; "
                                     f"min is {col.min:g}")
        if col.max is not None:
            good = high is not None and float(high) <= col.max and not nan
            add("range", name, good, f"column {name}: largest value {high}{' (and NaN)' if nan else ''}; "
                                     f"max is {col.max:g}")


def _check_label(table: pa.Table, label: str, add: _Add) -> None:
    if label not in table.column_names:
        add("label", label, False, f"label {label}: missing from the snapshot's columns {sorted(table.column_names)}")
        return
    column = table[label]
    if len(column) and column.null_count == len(column):
        add("label", label, False, f"label {label}: all {len(column)} values are null")
        return
    if column.null_count:
        add("label", label, False, f"label {label}: {column.null_count} null values; labels must be complete")
    distinct = pc.count_distinct(column.drop_null()).as_py() if len(column) else 0
    floating = pa.types.is_floating(column.type)
    if floating and len(column) and bool(pc.any(pc.is_nan(column)).as_py()):
        add("label", label, False, f"label {label}: holds NaN values; labels must be numbers")
    if len(column) > 1 and distinct <= 1:
        value = column.drop_null()[0].as_py() if len(column.drop_null()) else None
        add("label", label, False, f"label {label}: constant ({value!r} in all {len(column)} rows); nothing to learn")
    else:
        add("label", label, True, f"label {label}: {distinct} distinct values, no nulls")


def is_finite_number(value: object) -> bool:
    """True for an int or float that is neither NaN nor infinite (bools count as numbers).

    Example:
        >>> is_finite_number(1.5), is_finite_number(float("nan")), is_finite_number("x")
        (True, False, False)
    """
    return isinstance(value, (int, float)) and math.isfinite(value)
