"""Inline event rows: checked per event against the dataset schema, pinned from the first rows, written as Parquet.

A dataset's schema is ``dataset.schema`` (column -> :class:`~streamtune.config.jobspec.ColumnSpec`); when a spec
gives none, the ingestor pins one from the first inline rows it accepts (:func:`pin_schema`) and stores it with
the spec. Each event's rows are then checked on arrival (:func:`check_rows`): a value of the wrong type, an
unknown column, or a null in a non-nullable column rejects that event alone, with a reason naming the row, the
column, the value and the rule. A column may be missing from an event when it is nullable.

Example:
    >>> schema = pin_schema([{"price": 7.5, "promo": 1}])
    >>> {k: v.type for k, v in schema.items()}
    {'price': 'double', 'promo': 'int64'}
    >>> check_rows([{"price": 8, "promo": 0}], schema)
    >>> try:
    ...     check_rows([{"price": 7.5}, {"price": "7.5"}], schema)
    ... except DataError as exc:
    ...     print(exc.headline)
    Got "7.5" (str) for rows[1].price; the dataset schema says double
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from streamtune.artifacts.store import filesystem
from streamtune.config.jobspec import ColumnSpec
from streamtune.errors import DataError

__all__ = ["Schema", "check_rows", "pin_schema", "rows_table", "write_parquet"]

Schema = Mapping[str, ColumnSpec]
"""Column name -> Arrow type name and nullability."""

_INT_RANGES = {f"{s}int{b}": ((0, 2**b - 1) if s else (-(2 ** (b - 1)), 2 ** (b - 1) - 1))
               for s in ("", "u") for b in (8, 16, 32, 64)}
_CONTENT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError,
                   ValueError)


def _is_float(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int_check(lo: int, hi: int) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, float):
            if not (math.isfinite(v) and v.is_integer()):
                return False
            v = int(v)
        return isinstance(v, int) and lo <= v <= hi

    return check


@lru_cache(maxsize=256)
def _checker(type_name: str) -> Callable[[Any], bool]:
    """A predicate that says whether a JSON value fits the Arrow type ``type_name``."""
    if type_name in ("double", "float", "halffloat"):
        return _is_float
    if type_name in _INT_RANGES:
        return _int_check(*_INT_RANGES[type_name])
    if type_name in ("string", "large_string", "utf8"):
        return lambda v: isinstance(v, str)
    if type_name == "bool":
        return lambda v: isinstance(v, bool)
    arrow_type = _arrow_type(type_name)

    def by_arrow(v: Any) -> bool:
        try:
            pa.array([v], type=arrow_type)
        except _CONTENT_ERRORS:
            return False
        return True

    return by_arrow


@lru_cache(maxsize=256)
def _arrow_type(type_name: str) -> pa.DataType:
    try:
        return pa.type_for_alias(type_name)
    except (ValueError, KeyError):
        raise DataError(f'Got "{type_name}" for a type in dataset.schema; it must be an Arrow type name such as '
                        "double, int64, string, bool or timestamp[us]") from None


def pin_schema(rows: Sequence[Mapping[str, Any]]) -> dict[str, ColumnSpec]:
    """Infer a schema from the first rows of a dataset: Arrow's types, every column nullable.

    Raises:
        DataError: the rows disagree on a column's type, a column holds only nulls (its type cannot be
            known) or nested values.

    Example:
        >>> sorted((k, c.type, c.nullable) for k, c in pin_schema([{"a": 1, "b": "x"}, {"a": 2.5}]).items())
        [('a', 'double', True), ('b', 'string', True)]
    """
    try:
        table = pa.Table.from_pylist(list(rows))
    except _CONTENT_ERRORS as exc:
        raise DataError(f"inline rows disagree on a column's type, so no schema can be pinned from them: {exc}",
                        fix="send one type per column, or give dataset.schema in the spec") from None
    schema: dict[str, ColumnSpec] = {}
    for field in table.schema:
        name = str(field.type)
        if pa.types.is_null(field.type):
            raise DataError(f'Got only nulls for column "{field.name}" in the first inline rows; its type cannot '
                            "be pinned from them", fix="give dataset.schema in the spec")
        try:
            _arrow_type(name)
        except DataError:
            raise DataError(f'Got nested values ({name}) for column "{field.name}"; inline rows hold flat values',
                            fix="give dataset.schema, or send the data as a Parquet file") from None
        schema[field.name] = ColumnSpec(type=name, nullable=True)
    return schema


def check_rows(rows: Sequence[Mapping[str, Any]], schema: Schema) -> None:
    """Check every value of ``rows`` against ``schema``; raise on the first one that does not fit.

    Raises:
        DataError: naming the row, the column, the value and the rule.

    Example:
        >>> from streamtune.config.jobspec import ColumnSpec
        >>> try:
        ...     check_rows([{"y": None}], {"y": ColumnSpec(type="double", nullable=False)})
        ... except DataError as exc:
        ...     print(exc.headline)
        Got null for rows[0].y; the dataset schema says it is not nullable
    """
    checks = {name: (_checker(col.type), col.type, col.nullable) for name, col in schema.items()}
    required = frozenset(name for name, col in schema.items() if not col.nullable)
    for i, row in enumerate(rows):
        if required and not required <= row.keys():
            missing = sorted(required - row.keys())
            raise DataError(f"Missing rows[{i}].{missing[0]}; the dataset schema says it is not nullable")
        for key, value in row.items():
            check = checks.get(key)
            if check is None:
                raise DataError(f'Got unknown column "{key}" in rows[{i}]; the dataset schema has '
                                f"{', '.join(sorted(schema))}", fix="add the column to dataset.schema")
            if value is None:
                if not check[2]:
                    raise DataError(f"Got null for rows[{i}].{key}; the dataset schema says it is not nullable")
            elif not check[0](value):
                shown = str(value) if len(str(value)) <= 80 else str(value)[:77] + "..."
                raise DataError(f'Got "{shown}" ({type(value).__name__}) for rows[{i}].{key}; the dataset schema '
                                f"says {check[1]}")


def rows_table(rows: Sequence[Mapping[str, Any]], schema: Schema | None) -> pa.Table:
    """The Arrow table of a window's inline rows, typed by ``schema`` (columns no row has are left out).

    Raises:
        DataError: the rows cannot form one table (the window cannot become a run).

    Example:
        >>> from streamtune.config.jobspec import ColumnSpec
        >>> rows_table([{"x": 1}, {"x": 2}], {"x": ColumnSpec(type="double"), "y": ColumnSpec(type="double")}).schema
        x: double
    """
    try:
        if not schema:
            return pa.Table.from_pylist(list(rows))
        present: set[str] = set()
        for row in rows:
            present.update(row.keys())
        fields = [pa.field(n, _arrow_type(c.type), nullable=c.nullable) for n, c in schema.items() if n in present]
        return pa.Table.from_pylist(list(rows), schema=pa.schema(fields))
    except _CONTENT_ERRORS as exc:
        raise DataError(f"the window's inline rows cannot form one table: {exc}") from None


def write_parquet(table: pa.Table, uri: str) -> str:
    """Write ``table`` as Parquet at ``uri`` (a path or a store URI; parents created); return the URI.

    Raises:
        OSError: the store could not be written (transient: the caller retries).
        DataError: the table cannot be written as Parquet (its content).
    """
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    try:
        pq.write_table(table, path, filesystem=fs)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"the window's inline rows cannot be written as Parquet: {exc}") from None
    return uri
