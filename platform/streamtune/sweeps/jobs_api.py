"""Submit sweeps as Ray Jobs, one per run, with ``submission_id = run_id`` so resubmitting is a no-op."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from streamtune.errors import SweepError

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class RayJobRunner:
    """Runs the sweep driver on a Ray cluster through the Jobs API.

    Example:
        >>> runner = RayJobRunner("http://127.0.0.1:8265")          # doctest: +SKIP
        >>> runner.submit("r-1a2b", "/data/st/r-1a2b/request.json", "/repo/jobs")  # doctest: +SKIP
        >>> runner.status("r-1a2b")                                  # doctest: +SKIP
        'RUNNING'
    """

    def __init__(self, jobs_url: str, *, python: str | None = None, agent_wait_s: float = 60) -> None:
        self.jobs_url = jobs_url
        self.agent_wait_s = agent_wait_s
        self.python = python or sys.executable
        self._client = None

    @property
    def client(self):  # noqa: ANN201 - JobSubmissionClient is imported lazily
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.jobs_url)
            logging.getLogger("ray.dashboard.modules.dashboard_sdk").setLevel(logging.WARNING)
        return self._client

    def submit(self, run_id: str, request_path: str | Path, code_dir: str | Path, *, num_gpus: float = 0) -> bool:
        """Submit the run's sweep; returns False if a job with this run_id already exists."""
        if self.status(run_id) is not None:
            return False
        # -P keeps the job's cwd off sys.path: a stray ./ray folder must not shadow the ray package.
        entrypoint = f"{self.python} -P -m streamtune.sweeps.driver {request_path}"
        runtime_env = {"py_modules": [str(code_dir)], "env_vars": {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}}
        deadline = time.monotonic() + self.agent_wait_s
        while True:
            try:
                self.client.submit_job(
                    entrypoint=entrypoint, submission_id=run_id, runtime_env=runtime_env,
                    entrypoint_num_cpus=0, entrypoint_num_gpus=0, metadata={"streamtune_run": run_id},
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
