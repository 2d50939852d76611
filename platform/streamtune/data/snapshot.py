"""Snapshots: the Arrow data behind a trigger window, with checks, a fingerprint and a fixed split."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from streamtune.artifacts.store import group_by_filesystem
from streamtune.config.jobspec import DatasetSpec
from streamtune.data.uris import UriChecker
from streamtune.errors import DataError


@dataclass(frozen=True)
class Splits:
    """Train, validation (for tuning) and holdout (for the gate) tables of one snapshot."""

    train: pa.Table
    valid: pa.Table
    holdout: pa.Table


class Snapshot:
    """The rows of one window, read with ``pyarrow.dataset`` from the files that its events name.

    Example:
        >>> import pyarrow as pa
        >>> from streamtune.config import DatasetSpec
        >>> spec = DatasetSpec(name="s", label="y")
        >>> snap = Snapshot.from_parts(spec, uris=[], rows=[{"x": float(i), "y": 2.0 * i} for i in range(10)])
        >>> snap.num_rows, snap.features
        (10, ['x'])
    """

    def __init__(self, spec: DatasetSpec, table: pa.Table, uris: Sequence[str], *, check: bool = True) -> None:
        self.spec = spec
        self.table = table
        self.uris = list(uris)
        if check:
            self.check_columns()

    @classmethod
    def from_parts(cls, spec: DatasetSpec, uris: Iterable[str], rows: Iterable[dict[str, Any]] = (),
                   *, trusted_roots: Sequence[str] = (), platform_roots: Sequence[str] | None = None,
                   check: bool = True) -> Snapshot:
        """Build a snapshot from Parquet URIs plus optional inline rows.

        Every URI is checked again here, at read time (:func:`~streamtune.data.uris.check_uri`: symlinks and
        ``..`` resolved, roots compared on path boundaries): it must lie under ``spec.uri_roots`` or under
        ``trusted_roots`` (streamtune's own folder for inline rows); with no ``uri_roots``, under
        ``platform_roots`` (default: ``trusted_roots``) only. The files are read at their resolved paths.
        With ``check=False`` the label and feature columns are not checked yet (the data gate reports on them
        first; call :meth:`check_columns` after).

        Raises:
            DataError: a URI breaks the rule, a file cannot be read, or the files disagree on their schema.
        """
        checker = UriChecker([*spec.uri_roots, *trusted_roots] if spec.uri_roots else
                             [*(platform_roots or ()), *trusted_roots], [], cache_s=0.0)
        try:
            uris = sorted({checker.check(u) for u in uris})
        except DataError as exc:
            raise DataError(f"dataset {spec.name}: {exc.headline}", fix=exc.fix) from None
        tables = []
        try:
            for fs, paths in group_by_filesystem(uris):  # a list of URIs is read with its own filesystem
                tables.append(pads.dataset(paths, format="parquet", filesystem=fs).to_table())
        except (FileNotFoundError, pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"cannot read the snapshot's files for dataset {spec.name}: {exc}") from None
        rows = list(rows)
        if rows:
            tables.append(pa.Table.from_pylist(rows))
        if not tables:
            raise DataError(f"window for dataset {spec.name} names no files and no rows")
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except pa.ArrowInvalid as exc:
            raise DataError(f"files of dataset {spec.name} disagree on their schema: {exc}") from None
        return cls(spec, table, uris, check=check)

    @property
    def num_rows(self) -> int:
        """Rows in the snapshot."""
        return self.table.num_rows

    @property
    def features(self) -> list[str]:
        """Feature columns: the spec's list, or every column but the label."""
        skip = {self.spec.label, self.spec.time_column}
        return list(self.spec.features or [c for c in self.table.column_names if c not in skip])

    @property
    def fingerprint(self) -> str:
        """sha256 over the schema, the URIs and the row count: the snapshot's identity in lineage."""
        body = json.dumps(
            {"schema": self.table.schema.to_string(), "uris": self.uris, "rows": self.num_rows}, sort_keys=True
        )
        return hashlib.sha256(body.encode()).hexdigest()[:24]

    def check_columns(self) -> None:
        """Raise :class:`DataError` when the label or a feature column is missing, or a label is null."""
        names = set(self.table.column_names)
        if self.spec.label not in names:
            raise DataError(
                f'Got columns {sorted(names)} for dataset {self.spec.name}; label "{self.spec.label}" is missing'
            )
        missing = [f for f in self.features if f not in names]
        if missing:
            raise DataError(f"dataset {self.spec.name} lacks feature columns {missing}")
        if self.table[self.spec.label].null_count:
            raise DataError(
                f"dataset {self.spec.name}: label {self.spec.label} has "
                f"{self.table[self.spec.label].null_count} null values; labels must be complete"
            )

    def split(self, holdout_fraction: float, valid_fraction: float, seed: int = 0, *,
              by_time: bool = False) -> Splits:
        """Split rows into train, validation and holdout.

        At random but reproducibly by default: the same snapshot always gives the same holdout. With
        ``by_time`` the rows are ordered by ``dataset.time_column`` (a stable sort): the holdout is the latest
        ``holdout_fraction`` of them, the validation rows the latest ``valid_fraction`` of the rest, and train
        the earlier rows, so no train row is later than a validation row, nor a validation row than a holdout row.

        Raises:
            DataError: too few rows to split, or (``by_time``) no time column or nulls in it.

        Example:
            >>> import pyarrow as pa
            >>> from streamtune.config import DatasetSpec
            >>> spec = DatasetSpec(name="s", label="y", time_column="day")
            >>> rows = [{"day": d, "x": 1.0, "y": 0.0} for d in [5, 1, 9, 3, 7, 2, 8, 4, 6, 0]]
            >>> parts = Snapshot.from_parts(spec, [], rows).split(0.2, 0.25, by_time=True)
            >>> parts.train["day"].to_pylist(), parts.valid["day"].to_pylist(), parts.holdout["day"].to_pylist()
            ([0, 1, 2, 3, 4, 5], [6, 7], [8, 9])
        """
        n = self.num_rows
        n_hold = max(1, int(round(n * holdout_fraction)))
        n_valid = max(1, int(round((n - n_hold) * valid_fraction)))
        if n - n_hold - n_valid < 1:
            raise DataError(f"dataset {self.spec.name} has {n} rows; too few to split into train/valid/holdout")
        if by_time:
            order = self._time_order()
            train, valid, hold = np.split(order, [n - n_hold - n_valid, n - n_hold])
            return Splits(self.table.take(train), self.table.take(valid), self.table.take(hold))
        order = np.random.default_rng(seed).permutation(n)
        hold, valid, train = np.split(order, [n_hold, n_hold + n_valid])
        return Splits(self.table.take(np.sort(train)), self.table.take(np.sort(valid)), self.table.take(np.sort(hold)))

    def _time_order(self) -> np.ndarray:
        """Row indices in time order (stable), refusing a missing time column or nulls in it."""
        column = self.spec.time_column
        if column is None or column not in self.table.column_names:
            raise DataError(f'Got columns {sorted(self.table.column_names)} for dataset {self.spec.name}; the time '
                            f'split needs its time column "{column}"')
        nulls = self.table[column].null_count
        if nulls:
            raise DataError(f'dataset {self.spec.name}: time column "{column}" has {nulls} null values; a time split '
                            "needs every row's time")
        return np.asarray(pc.sort_indices(self.table, sort_keys=[(column, "ascending")]))

