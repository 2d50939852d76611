"""The plain Ray Serve baseline: the same LightGBM model behind a Serve deployment that loads it in its
constructor, with no board, no manifest check and no version routing. Optionally with ``@serve.batch``.

Both classes answer ``{"rows": [...]}`` with ``{"version": ..., "predictions": [...]}``, like streamtune's
replicas, so the same HTTP load (``wrk``) runs against either.

Example:
    >>> serve.run(PlainModel.bind("/artifacts/v1", "1"), name="plain", route_prefix="/plain")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from ray import serve
from starlette.requests import Request


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.25})
class PlainModel:
    """One replica: the model is loaded once, each request is parsed and predicted on the event loop."""

    def __init__(self, artifact: str, version: str) -> None:
        from jobs.tabular_gbdt import Job

        self.predictor, self.version = Job().load(artifact), version

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        preds = self.predictor.predict(pa.Table.from_pylist(body["rows"]))
        return {"version": self.version, "predictions": [float(p) for p in preds]}


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class BatchedPlainModel:
    """The same, with ``@serve.batch``: concurrent requests' rows are predicted in one call."""

    def __init__(self, artifact: str, version: str) -> None:
        from jobs.tabular_gbdt import Job

        self.predictor, self.version = Job().load(artifact), version

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _predict(self, bodies: list[list[dict[str, Any]]]) -> list[list[float]]:
        rows = [row for body in bodies for row in body]
        preds = [float(p) for p in self.predictor.predict(pa.Table.from_pylist(rows))]
        out, at = [], 0
        for body in bodies:
            out.append(preds[at:at + len(body)])
            at += len(body)
        return out

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"version": self.version, "predictions": await self._predict(body["rows"])}
