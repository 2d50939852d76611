"""What the controller needs from Ray: typed ports, so tests of pure logic can stand in for the cluster.

:class:`~streamtune.sweeps.jobs_api.RayJobRunner` is the :class:`Jobs` port and
:class:`~streamtune.serving.hub.ServeHub` the :class:`Serving` port.
"""

from __future__ import annotations

from typing import Protocol

from streamtune.config.jobspec import JobSpec, RolloutSpec
from streamtune.serving.records import AccessPolicy, EnsureResult, ModelRef, SwapReport


class Jobs(Protocol):
    """Runs sweeps as jobs on the cluster, one per run attempt, keyed by the attempt's submission id
    (:attr:`RunRecord.submission_id`: the run id for the first attempt, ``<run_id>-a<N>`` after)."""

    def submit(self, submission_id: str, request_uri: str, code_uri: str, *, run_id: str | None = None) -> bool:
        """Submit one attempt of a run's sweep (request and job code by URI); False if that job exists already."""

    def status(self, submission_id: str) -> str | None:
        """The job's status name (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED), or None if the cluster has no
        such job; raises a StreamtuneError when it cannot tell (the cluster is unreachable)."""

    def exit_code(self, submission_id: str) -> int | None:
        """The exit code of the job's driver (negative: the signal that killed it); None if unknown or running."""

    def logs(self, submission_id: str) -> str:
        """The job's whole log; raises NotFoundError if the cluster has no such job."""

    def logs_tail(self, submission_id: str, lines: int = 30) -> str:
        """The last lines of the job's log."""

    def stop(self, submission_id: str) -> None:
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
