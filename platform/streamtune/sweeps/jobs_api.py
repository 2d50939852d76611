"""Submit sweeps as Ray Jobs, one per run, with ``submission_id = run_id`` so resubmitting is a no-op.

Nothing submitted names a path of the controller's machine: the entrypoint is ``python`` as the cluster has it,
the request is a URI in the artifact store, and the job code arrives through ``runtime_env.py_modules`` by URI.
"""

from __future__ import annotations

import logging
import os
import time

from streamtune.artifacts.store import ray_uri
from streamtune.errors import SweepError

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


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

    def submit(self, run_id: str, request_uri: str, code_uri: str) -> bool:
        """Submit the run's sweep; returns False if a job with this run_id already exists."""
        if self.status(run_id) is not None:
            return False
        entrypoint = self.entrypoint(request_uri)
        env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
        if os.environ.get("AWS_ENDPOINT_URL"):  # an S3-compatible store (not a secret; credentials stay on nodes)
            env["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
        runtime_env = {"py_modules": [ray_uri(code_uri)], "env_vars": env}
        deadline = time.monotonic() + self.agent_wait_s
        while True:
            try:
                self.client.submit_job(
                    entrypoint=entrypoint, submission_id=run_id, runtime_env=runtime_env,
                    entrypoint_num_cpus=0, entrypoint_num_gpus=0, metadata={"streamtune_run": run_id},
                    entrypoint_resources=self.driver_resources or None,
                )
                return True
            except Exception as exc:  # the Jobs API raises RuntimeError for a duplicate id, among others
                if self.status(run_id) is not None:
                    return False
                # a fresh cluster's job agent takes a few seconds to come up after the dashboard
                if "No available agent" in str(exc) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                raise SweepError(f"could not submit run {run_id} to Ray Jobs at {self.jobs_url}: {exc}") from None

    def status(self, run_id: str) -> str | None:
        """The Ray Job's status name, or None if no job has this run_id."""
        try:
            return str(self.client.get_job_status(run_id).value)
        except Exception as exc:  # unknown ids raise; anything else is logged and treated as unknown
            if "does not exist" not in str(exc) and "404" not in str(exc):
                log.warning("status of Ray Job %s unavailable: %s", run_id, exc)
            return None

    def driver_node(self, run_id: str) -> str | None:
        """The Ray node id the job's driver runs (or ran) on; None if unknown."""
        try:
            node = self.client.get_job_info(run_id).driver_node_id
        except Exception as exc:
            log.warning("info of Ray Job %s unavailable: %s", run_id, exc)
            return None
        return str(node) if node else None

    def logs_tail(self, run_id: str, lines: int = 30) -> str:
        """The last lines of the job's driver log."""
        try:
            return "\n".join(self.client.get_job_logs(run_id).splitlines()[-lines:])
        except Exception as exc:
            return f"(logs unavailable: {exc})"

    def stop(self, run_id: str) -> None:
        """Stop a running job."""
        try:
            self.client.stop_job(run_id)
        except Exception as exc:
            log.warning("could not stop Ray Job %s: %s", run_id, exc)
