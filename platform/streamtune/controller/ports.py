"""What the controller needs from Ray: typed ports, so tests of pure logic can stand in for the cluster.

:class:`~streamtune.sweeps.jobs_api.RayJobRunner` is the :class:`Jobs` port and
:class:`~streamtune.serving.hub.ServeHub` the :class:`Serving` port.
"""

from __future__ import annotations

from typing import Protocol

from streamtune.config.jobspec import JobSpec, RolloutSpec
from streamtune.serving.records import AccessPolicy, EnsureResult, ModelRef, SwapReport


class Jobs(Protocol):
    """Runs sweeps as jobs on the cluster, one per run, keyed by run id."""

    def submit(self, run_id: str, request_uri: str, code_uri: str) -> bool:
        """Submit the run's sweep (request and job code by URI); False if a job with this id exists already."""

    def status(self, run_id: str) -> str | None:
        """The job's status name (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED), or None if unknown."""

    def logs_tail(self, run_id: str, lines: int = 30) -> str:
        """The last lines of the job's log."""

    def stop(self, run_id: str) -> None:
        """Stop the job."""


class Serving(Protocol):
    """The Serve apps of the specs, steered by the active controller's fencing token."""

    fence: int

    @property
    def policy(self) -> AccessPolicy:
        """Who may call the model endpoints, and how big a request may be."""

    def set_policy(self, policy: AccessPolicy) -> list[str]:
        """Apply ``policy`` to every app (and to apps deployed later); return the apps whose boards changed."""

    def swap(self, spec: JobSpec, ref: ModelRef, rollout: RolloutSpec | None = None) -> SwapReport:
        """Hot-swap the spec's app to ``ref`` (deploying the app first if needed)."""

    def ensure(self, spec: JobSpec, ref: ModelRef) -> EnsureResult:
        """Make the spec's app serve ``ref``: redeploy, recreate its board or swap, as needed."""
