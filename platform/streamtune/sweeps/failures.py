"""Why a sweep job failed, in words: ``error.json`` beside the result, and resource checks before Tune starts.

The driver catches what ends it, writes :class:`JobFailure` to :func:`error_uri` and exits non-zero; the
controller reads it and records ``"ValueError: boom (attempt 1 of 3)"`` rather than a raw log tail. When there
is no ``error.json`` (the driver was killed, or the job never started), :func:`exception_line` picks the last
line of the log that names an exception.

Example:
    >>> error_uri("s3://b/sales/r-1")
    's3://b/sales/r-1/error.json'
    >>> JobFailure(type="ValueError", message="boom", traceback="").headline
    'ValueError: boom'
    >>> exception_line("Traceback (most recent call last):\\n  File 'x'\\nValueError: boom\\n(pid=1) done")
    'ValueError: boom'
"""

from __future__ import annotations

import math
import re
import traceback as tb
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from streamtune.errors import StreamtuneError, SweepError
from streamtune.validation.data_gate import DataGateFailed, DataGateReport

ERROR = "error.json"

__all__ = ["ERROR", "InfeasibleResources", "JobFailure", "alive_nodes", "check_trial_resources", "error_uri",
           "exception_line", "infeasible_reason"]


class InfeasibleResources(SweepError):
    """A trial asks for resources that no node of the cluster has; waiting would hang the sweep forever."""


class JobFailure(BaseModel):
    """What ended a sweep job, as the driver writes it to ``error.json``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="The exception's class name, e.g. 'ValueError'.")
    message: str = Field(description="The exception's message (a streamtune error's headline and fix).")
    traceback: str = Field(description="The formatted traceback.")
    submission_id: str | None = Field(None, description="The Ray Job (attempt) that failed; None if unknown.")
    retryable: bool = Field(True, description="False when another attempt would fail the same way for certain.")
    data_gate: DataGateReport | None = Field(
        None, description="The data gate's report, when the snapshot failed it (no trial was started)."
    )

    @property
    def headline(self) -> str:
        """``Type: message``, on one line.

        Example:
            >>> JobFailure(type="SweepError", message="no trial\\n  fix: x", traceback="").headline
            'SweepError: no trial; fix: x'
        """
        text = "; ".join(line.strip() for line in self.message.splitlines() if line.strip())
        return f"{self.type}: {text}" if text else self.type

    @classmethod
    def from_exception(cls, exc: BaseException, submission_id: str | None = None) -> JobFailure:
        """Describe ``exc`` (with its traceback).

        Example:
            >>> try:
            ...     raise ValueError("boom")
            ... except ValueError as e:
            ...     JobFailure.from_exception(e, "r-1").headline
            'ValueError: boom'
        """
        return cls(type=type(exc).__name__, message=str(exc),
                   traceback="".join(tb.format_exception(type(exc), exc, exc.__traceback__)),
                   submission_id=submission_id,
                   retryable=not isinstance(exc, InfeasibleResources | DataGateFailed),
                   data_gate=exc.report if isinstance(exc, DataGateFailed) else None)


def error_uri(out_uri: str) -> str:
    """Where a run's ``error.json`` lives: beside ``result.json``.

    Example:
        >>> error_uri("/a/runs/r-1/")
        '/a/runs/r-1/error.json'
    """
    return f"{out_uri.rstrip('/')}/{ERROR}"


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failure))(:|$)")


def exception_line(log: str) -> str | None:
    """The last line of a log that looks like a raised exception (``SomeError: message``), or None.

    Example:
        >>> exception_line("ok\\nray.exceptions.RayTaskError: bad\\nshutting down") is None
        False
        >>> exception_line("all fine") is None
        True
    """
    for line in reversed(log.splitlines()):
        stripped = line.strip()
        if _EXCEPTION_LINE.match(stripped):
            return stripped[:500]
    return None


def infeasible_reason(request: Mapping[str, float], nodes: Sequence[Mapping[str, float]], *, count: int = 1,
                      driver_cpu: float = 0.0) -> str | None:
    """Why no node could ever place a trial asking for ``request``; None when some alive node could.

    ``nodes`` are the alive nodes' total resources (``ray.nodes()``'s ``Resources``). Zero requests are ignored.
    A multi-worker trial asks for ``count`` bundles of ``request`` (one per Ray Train worker, anywhere) and for
    ``driver_cpu`` on one node for the Tune actor that drives them; how many bundles a node holds is exact for
    equal bundles.

    Example:
        >>> infeasible_reason({"CPU": 1.0, "GPU": 0.0}, [{"CPU": 2.0}]) is None
        True
        >>> infeasible_reason({"CPU": 1.0, "GPU": 1.0}, [{"CPU": 2.0}, {"CPU": 4.0}])
        "trial needs {'GPU': 1.0}; no node of the cluster has that: nodes have CPU up to 4.0, GPU up to 0"
        >>> infeasible_reason({"CPU": 8.0}, [{"CPU": 2.0}, {"CPU": 2.0}])
        "trial needs {'CPU': 8.0}; no node of the cluster has that: nodes have CPU up to 2.0"
        >>> infeasible_reason({"CPU": 1.0}, [{"CPU": 2.0}, {"CPU": 2.0}], count=4) is None
        True
        >>> infeasible_reason({"CPU": 1.0}, [{"CPU": 2.0}, {"CPU": 2.0}], count=4, driver_cpu=0.01)
        "trial needs 4 workers of {'CPU': 1.0} and 0.01 CPU to drive them; the cluster holds 3 such workers at most"
    """
    wanted = {k: float(v) for k, v in request.items() if v}
    if not wanted:
        return None
    if not any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes):
        short = {k: v for k, v in wanted.items() if not any(node.get(k, 0.0) >= v for node in nodes)} or wanted
        have = ", ".join(f"{k} up to {max((node.get(k, 0.0) for node in nodes), default=0) or 0}" for k in wanted)
        return f"trial needs {short}; no node of the cluster has that: nodes have {have}"
    if count <= 1 and not driver_cpu:
        return None
    room = _room(wanted, nodes, driver_cpu)
    if room >= count:
        return None
    driver = f" and {driver_cpu:g} CPU to drive them" if driver_cpu else ""
    return f"trial needs {count} workers of {wanted}{driver}; the cluster holds {room} such workers at most"


def _room(wanted: Mapping[str, float], nodes: Sequence[Mapping[str, float]], driver_cpu: float) -> int:
    """How many bundles ``wanted`` the nodes hold together, with ``driver_cpu`` taken from the best node for it."""
    def holds(node: Mapping[str, float]) -> int:
        return int(min(math.floor(float(node.get(k, 0.0)) / v + 1e-9) for k, v in wanted.items()))

    each = [holds(n) for n in nodes]
    if not driver_cpu:
        return sum(each)
    best = -1
    for i, node in enumerate(nodes):
        if float(node.get("CPU", 0.0)) >= driver_cpu:
            best = max(best, sum(each) - each[i] + holds({**node, "CPU": float(node.get("CPU", 0.0)) - driver_cpu}))
    return max(best, 0)


def alive_nodes() -> list[dict[str, float]]:
    """The total resources of every alive node of the connected Ray cluster."""
    import ray

    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def check_trial_resources(cpu: float, gpu: float, *, workers: int = 1, driver_cpu: float = 0.0) -> None:
    """Fail fast, before Tune starts, when the connected Ray cluster can never run one trial: a node for each of
    its ``workers`` (``cpu``/``gpu`` each), and ``driver_cpu`` for its Tune actor.

    Raises:
        InfeasibleResources: names what the trial needs and what the nodes have.
    """
    import ray

    reason = infeasible_reason({"CPU": cpu, "GPU": gpu}, alive_nodes(), count=workers, driver_cpu=driver_cpu)
    if reason is not None:
        raise InfeasibleResources(
            f"{reason} (cluster total: {_short(ray.cluster_resources())})",
            fix="lower sweep.resources (cpu, gpu, workers) in the JobSpec, or add a node that has them",
        )


def _short(resources: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in resources.items() if k in ("CPU", "GPU", "memory") or k.startswith("accelerator")}


def describe(exc: BaseException) -> str:
    """A one-line ``Type: message`` for any exception (a streamtune error's headline)."""
    message = exc.headline if isinstance(exc, StreamtuneError) else str(exc)
    return JobFailure(type=type(exc).__name__, message=message, traceback="").headline
