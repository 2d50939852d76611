"""The :class:`Registry` extension point: specs, runs, offsets, window state, models and aliases.

Every implementation runs the conformance suite in ``tests/conformance/registry_suite.py``.

The controller is the only writer of run state. Its exactly-once guarantee rests on
:meth:`Registry.commit_window`, which stores the consumer group's next Kafka offsets, the trigger window
state and the new runs in one transaction: after a crash the controller seeks to
:meth:`Registry.load_offsets`, restores :meth:`Registry.load_windows`, and any window it closes again maps
to a run that already exists, so nothing runs twice and nothing is lost.

Example:
    >>> from streamtune.registry import open_registry
    >>> with open_registry("sqlite:///:memory:") as reg:
    ...     reg.put_spec("ctr", {"name": "ctr"})
    ...     reg.list_specs()
    [{'name': 'ctr'}]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from streamtune.registry.records import AliasEvent, ModelVersion, RunRecord, RunStatus

__all__ = ["Registry"]


class Registry(ABC):
    """Where streamtune keeps everything that must survive a restart.

    Use it as a context manager, or call :meth:`close`.

    Example:
        >>> from streamtune.registry import open_registry
        >>> with open_registry("sqlite:///:memory:") as reg:
        ...     reg.get_run("r-missing") is None
        True
    """

    # -- specs -------------------------------------------------------------------------------------

    @abstractmethod
    def put_spec(self, name: str, spec: dict[str, Any]) -> None:
        """Store a JobSpec (as its JSON dict) under ``name``, replacing any earlier one.

        Example:
            >>> from streamtune.registry import open_registry
            >>> reg = open_registry("sqlite:///:memory:"); reg.put_spec("ctr", {"name": "ctr"})
            >>> reg.get_spec("ctr")
            {'name': 'ctr'}
        """

    @abstractmethod
    def get_spec(self, name: str) -> dict[str, Any] | None:
        """Return the spec stored under ``name``, or None."""

    @abstractmethod
    def list_specs(self) -> list[dict[str, Any]]:
        """Return every stored spec, ordered by name."""

    # -- the exactly-once core ---------------------------------------------------------------------

    @abstractmethod
    def commit_window(
        self,
        group: str,
        offsets: dict[tuple[str, int], int],
        windows: dict[str, dict[str, Any] | None],
        new_runs: list[RunRecord],
    ) -> list[str]:
        """Store offsets, window state and new runs in ONE transaction: all of it, or none.

        Args:
            group: Kafka consumer group the offsets belong to.
            offsets: ``(topic, partition) -> next offset to read``; upserted.
            windows: ``window key -> state``; each given key's state is replaced, and ``{}`` or ``None``
                deletes it. Keys not given are left alone.
            new_runs: Runs to insert. A run whose ``run_id`` exists is skipped (idempotent replay), but
                one whose dataset or offsets differ from the stored run's raises, since its id collides.

        Returns:
            The run ids actually inserted, in the order given.

        Raises:
            RegistryError: the transaction failed; nothing was stored.

        Example:
            >>> from streamtune.registry import RunRecord, open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> run = RunRecord(run_id="r-1", spec_name="ctr", dataset="clicks", offsets={"d:0": [0, 9]})
            >>> reg.commit_window("g", {("d", 0): 10}, {"ctr": {}}, [run])
            ['r-1']
            >>> reg.commit_window("g", {("d", 0): 10}, {}, [run]), reg.load_offsets("g")
            ([], {('d', 0): 10})
        """

    @abstractmethod
    def load_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """Return ``(topic, partition) -> next offset`` stored for ``group`` (empty if none)."""

    @abstractmethod
    def load_windows(self) -> dict[str, dict[str, Any]]:
        """Return every stored window state, by window key."""

    # -- runs --------------------------------------------------------------------------------------

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None:
        """Return the run, or None if there is none with that id."""

    @abstractmethod
    def list_runs(
        self,
        spec_name: str | None = None,
        status: RunStatus | str | list[RunStatus | str] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Return runs, newest first, optionally only those of one spec and of the given status(es).

        Raises:
            RegistryError: ``status`` names no :class:`RunStatus`, or ``limit`` is below 1.

        Example:
            >>> from streamtune.registry import open_registry
            >>> open_registry("sqlite:///:memory:").list_runs(status=["running", "pending"])
            []
        """

    @abstractmethod
    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Change fields of a run; ``updated_at`` is set to now.

        ``run_id``, ``dataset``, ``offsets`` and ``created_at`` cannot change: the id is derived from them.

        Returns:
            The run as stored after the change.

        Raises:
            RegistryError: no run has that id, a field is unknown or immutable, or a value is invalid.

        Example:
            >>> from streamtune.registry import RunRecord, open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> reg.commit_window("g", {}, {}, [RunRecord(run_id="r-1", spec_name="s", dataset="d")])
            ['r-1']
            >>> reg.update_run("r-1", status="running", timings={"submit": 0.5}).status.value
            'running'
        """

    # -- models and aliases ------------------------------------------------------------------------

    @abstractmethod
    def register_model(
        self,
        name: str,
        run_id: str,
        artifact_uri: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        lineage: dict[str, Any],
    ) -> ModelVersion:
        """Register a new version of ``name`` (1, 2, ...); registering the same run again returns it.

        Example:
            >>> from streamtune.registry import open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> reg.register_model("ctr", "r-1", "file:///a/1", {"lr": 0.1}, {"auc": 0.9}, {}).version
            1
            >>> reg.register_model("ctr", "r-1", "file:///a/1", {"lr": 0.1}, {"auc": 0.9}, {}).version
            1
        """

    @abstractmethod
    def get_model(self, name: str, version: int) -> ModelVersion | None:
        """Return one model version, or None."""

    @abstractmethod
    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Return model versions ordered by name then version, optionally of one model only."""

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> AliasEvent:
        """Point ``alias`` of model ``name`` at ``version`` and record the change in the alias history.

        Raises:
            RegistryError: model ``name`` has no such version.

        Example:
            >>> from streamtune.registry import open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> _ = reg.register_model("ctr", "r-1", "file:///a/1", {}, {}, {})
            >>> reg.set_alias("ctr", "champion", 1, reason="first model").previous is None
            True
            >>> reg.get_alias("ctr", "champion").run_id
            'r-1'
        """

    @abstractmethod
    def remove_alias(self, name: str, alias: str, reason: str = "") -> AliasEvent | None:
        """Unset ``alias`` of model ``name``; records an event with ``version=None``.

        Returns:
            The event, or None if the alias was not set (nothing is recorded then).
        """

    @abstractmethod
    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        """Return the version ``alias`` points at, or None if it is unset."""

    @abstractmethod
    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Return the alias changes of model ``name`` (of one alias if given), oldest first."""

    # -- lifecycle ---------------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release the connection; later calls raise RegistryError. Closing twice is fine."""

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
