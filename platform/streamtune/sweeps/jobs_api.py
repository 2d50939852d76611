"""Submit sweeps as Ray Jobs, one per run attempt, with ``submission_id = run_id`` for the first attempt and
``<run_id>-a<N>`` after (:attr:`RunRecord.submission_id`), so resubmitting an attempt is a no-op and a retry is a
new job.

Nothing submitted names a path of the controller's machine: the entrypoint is ``python`` as the cluster has it,
the request is a URI in the artifact store, and the job code arrives through ``runtime_env.py_modules`` by URI.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from streamtune import faults
from streamtune.artifacts.store import ray_uri
from streamtune.errors import NotFoundError, ServiceError, SweepError

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def killed_by(exit_code: int | None) -> str | None:
    """The signal a driver's exit code says killed it (``-9``, or ``137`` from a shell: 128 + 9), else None.

    Example:
        >>> killed_by(-9), killed_by(137), killed_by(1), killed_by(None)
        ('SIGKILL', 'SIGKILL', None, None)
    """
    if exit_code is None or 0 <= exit_code <= 128:
        return None
    number = -exit_code if exit_code < 0 else exit_code - 128
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class RayJobRunner:
    """Runs the sweep driver on a Ray cluster through the Jobs API.

    The driver runs on the head node, so a worker node's death ends only the trials on it, never the sweep:
    a job that asks for no resources is placed on the head by Ray (2.60 pins it there by the head's node id).
    On a cluster whose head must not run drivers, ``driver_resources`` names a custom resource of the nodes
    that may (e.g. ``{"streamtune_head": 0.01}`` on a local cluster, see ``embedded.ray.HEAD_RESOURCE``); the
    job then asks for it instead.

    Example:
        >>> runner = RayJobRunner("http://127.0.0.1:8265")
        >>> runner.entrypoint("s3://b/sales/r-1a2b/request.json")
        'python -P -m streamtune.sweeps.driver s3://b/sales/r-1a2b/request.json'
        >>> runner.submit("r-1a2b", "s3://b/sales/r-1a2b/request.json", "s3://b/code/5e1f.zip")  # doctest: +SKIP
        True
        >>> runner.submit("r-1a2b-a2", "s3://b/sales/r-1a2b/request.json", "s3://b/code/5e1f.zip",
        ...               run_id="r-1a2b")  # a retry: a new job  # doctest: +SKIP
        True
        >>> runner.logs("r-1a2b-a2").splitlines()[-1]  # doctest: +SKIP
        'ValueError: boom'
    """

    def __init__(self, jobs_url: str, *, agent_wait_s: float = 60,
                 driver_resources: dict[str, float] | None = None) -> None:
        self.jobs_url = jobs_url
        self.agent_wait_s = agent_wait_s
        self.driver_resources = dict(driver_resources or {})
        self._client = None

    @property
    def client(self):  # noqa: ANN201 - JobSubmissionClient is imported lazily
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.jobs_url)
            logging.getLogger("ray.dashboard.modules.dashboard_sdk").setLevel(logging.WARNING)
        return self._client

    @staticmethod
    def entrypoint(request_uri: str) -> str:
        """The job's command: the cluster's ``python`` (-P keeps the cwd off sys.path, so a stray ./ray folder
        cannot shadow the ray package)."""
        return f"python -P -m streamtune.sweeps.driver {request_uri}"

    def submit(self, submission_id: str, request_uri: str, code_uri: str, *, run_id: str | None = None) -> bool:
        """Submit one attempt of a run's sweep as the Ray Job ``submission_id``; False if that job exists already.

        ``run_id`` (default: ``submission_id``) goes into the job's metadata.
        """
        run_id = run_id or submission_id
        if self.status(submission_id) is not None:
            return False
        entrypoint = self.entrypoint(request_uri)
        env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
        if os.environ.get("AWS_ENDPOINT_URL"):  # an S3-compatible store (not a secret; credentials stay on nodes)
            env["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
        if os.environ.get(faults.ENV):  # fault tests arm the driver's kill points (streamtune.faults)
            env[faults.ENV] = os.environ[faults.ENV]
        runtime_env = {"py_modules": [ray_uri(code_uri)], "env_vars": env}
        deadline = time.monotonic() + self.agent_wait_s
        while True:
            try:
                self.client.submit_job(
                    entrypoint=entrypoint, submission_id=submission_id, runtime_env=runtime_env,
                    entrypoint_num_cpus=0, entrypoint_num_gpus=0,
                    metadata={"streamtune_run": run_id, "streamtune_submission": submission_id},
                    entrypoint_resources=self.driver_resources or None,
                )
                return True
            except Exception as exc:  # the Jobs API raises RuntimeError for a duplicate id, among others
                if self.status(submission_id) is not None:
                    return False
                # a fresh cluster's job agent takes a few seconds to come up after the dashboard
                if "No available agent" in str(exc) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                raise SweepError(f"could not submit run {run_id} (Ray Job {submission_id}) to Ray Jobs at "
                                 f"{self.jobs_url}: {exc}") from None

    def status(self, submission_id: str) -> str | None:
        """The Ray Job's status name, or None if the cluster has no job of this id (it never had, or it restarted).

        Raises:
            SweepError: the Jobs API cannot be reached, so whether the job exists is unknown (a run must not be
                given up, or retried beside a job still running, on a transient error).
        """
        try:
            return str(self.client.get_job_status(submission_id).value)
        except Exception as exc:  # unknown ids raise "does not exist"; anything else means we cannot tell
            if "does not exist" in str(exc) or "404" in str(exc):
                return None
            self._client = None  # a restarted head: connect afresh next time
            raise SweepError(f"status of Ray Job {submission_id} unavailable from {self.jobs_url}: "
                             f"{type(exc).__name__}: {str(exc)[:200]}",
                             fix="is Ray up? see `streamtune status`; the run is checked again next turn") from None

    def driver_node(self, run_id: str) -> str | None:
        """The Ray node id the job's driver runs (or ran) on; None if unknown."""
        try:
            node = self.client.get_job_info(run_id).driver_node_id
        except Exception as exc:
            log.warning("info of Ray Job %s unavailable: %s", run_id, exc)
            return None
        return str(node) if node else None

    def exit_code(self, submission_id: str) -> int | None:
        """The exit code of the job's driver process (negative: the signal that killed it); None if unknown."""
        try:
            code = self.client.get_job_info(submission_id).driver_exit_code
        except Exception as exc:
            log.warning("info of Ray Job %s unavailable: %s", submission_id, exc)
            return None
        return None if code is None else int(code)

    def logs(self, submission_id: str) -> str:
        """The job's whole driver log (``JobSubmissionClient.get_job_logs``).

        Raises:
            NotFoundError: the cluster has no job of this id (never submitted, or Ray restarted since).
            ServiceError: the Jobs API cannot be reached.
        """
        try:
            return str(self.client.get_job_logs(submission_id))
        except Exception as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                raise NotFoundError(f'Got "{submission_id}" for Ray Job; the cluster at {self.jobs_url} has no '
                                    "such job", fix="Ray keeps job logs only until its head restarts") from None
            raise ServiceError(f"logs of Ray Job {submission_id} unavailable from {self.jobs_url}: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from None

    def logs_tail(self, submission_id: str, lines: int = 30) -> str:
        """The last lines of the job's driver log (a note in parentheses if they cannot be read)."""
        try:
            return "\n".join(self.logs(submission_id).splitlines()[-lines:])
        except Exception as exc:
            return f"(logs unavailable: {exc})"

    def stop(self, submission_id: str) -> None:
        """Stop a running job."""
        try:
            self.client.stop_job(submission_id)
        except Exception as exc:
            log.warning("could not stop Ray Job %s: %s", submission_id, exc)
