"""Synthetic tabular data with injected drift, for the demo and the tests.

No PyPI package we can depend on ships a small drifting tabular data set without a download at run time,
so the demo generates one: a retail "sales" regression whose price elasticity, promo effect and
temperature distribution shift between batches (``drift > 0``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = ["price", "promo", "temp", "weekday", "region"]
LABEL = "sales"


def make_sales(rows: int, *, drift: float = 0.0, seed: int = 0) -> pa.Table:
    """Generate ``rows`` rows; ``drift`` in [0, 1] moves the data and the relationship.

    Example:
        >>> t = make_sales(100, seed=1)
        >>> t.num_rows, t.column_names[-1]
        (100, 'sales')
    """
    rng = np.random.default_rng(seed)
    price = rng.uniform(1, 20, rows)
    promo = rng.integers(0, 2, rows)
    temp = rng.normal(20 + 8 * drift, 5, rows)
    weekday = rng.integers(0, 7, rows)
    region = rng.integers(0, 4, rows)
    elasticity = -1.5 - 2.0 * drift
    promo_lift = 8 + 10 * drift
    region_effect = np.array([0.0, 4.0, -3.0, 6.0 * (1 - 2 * drift)])[region]
    sales = (50 + elasticity * price + promo_lift * promo + 0.8 * temp + 3.0 * (weekday >= 5)
             + region_effect + 0.05 * drift * temp**2 + rng.normal(0, 2, rows))
    return pa.table({"price": price, "promo": promo, "temp": temp, "weekday": weekday, "region": region,
                     LABEL: sales})


def write_batch(folder: str | Path, files: int, rows_per_file: int, *, drift: float, seed: int) -> list[str]:
    """Write ``files`` Parquet files of synthetic rows and return their absolute paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = out / f"part-{i:03d}.parquet"
        pq.write_table(make_sales(rows_per_file, drift=drift, seed=seed * 1000 + i), path)
        paths.append(str(path.resolve()))
    return paths
