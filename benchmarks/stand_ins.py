"""Stand-ins for the controller's ports in benchmarks that need no Ray cluster (the spec is paused)."""

from __future__ import annotations


class NoJobs:
    """The ``Jobs`` port of a controller whose spec is paused: nothing is ever submitted."""

    def submit(self, submission_id: str, request_uri: str, code_uri: str, *, run_id: str | None = None) -> bool:
        raise AssertionError("nothing is submitted in this benchmark")

    def status(self, submission_id: str) -> str | None:
        return None

    def logs(self, submission_id: str) -> str:
        return ""

    def logs_tail(self, submission_id: str, lines: int = 30) -> str:
        return ""

    def stop(self, submission_id: str) -> None:
        pass
