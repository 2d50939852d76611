"""The :class:`Registry` extension point: specs, runs, offsets, window state, models, aliases, commands, lease.

Every implementation runs the conformance suite in ``tests/conformance/registry_suite.py``.

The active controller is the only writer of specs, runs, aliases and serving state; everyone else appends
commands (:meth:`Registry.append_command`), which it carries out. It holds the ``controller`` lease
(:meth:`Registry.acquire_lease`) and fences its registry object with it (:meth:`Registry.fence`), so a
controller that lost the lease cannot write any more. Its exactly-once guarantee rests on
:meth:`Registry.commit_window`, which stores the consumer group's next Kafka offsets, the trigger window
state and the new runs in one transaction: after a crash the controller seeks to
:meth:`Registry.load_offsets`, restores :meth:`Registry.load_windows`, and any window it closes again maps
to a run that already exists, so nothing runs twice and nothing is lost.

Example:
    >>> from streamtune.registry import open_registry
    >>> with open_registry("sqlite:///:memory:") as reg:
    ...     lease = reg.acquire_lease("controller", "host-a:1", ttl_s=10)
    ...     reg.acquire_lease("controller", "host-b:2", ttl_s=10) is None, lease.token
    (True, 1)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from streamtune.config.jobspec import JobSpec
from streamtune.registry.commands import Command, CommandOutcome, CommandRecord, CommandStatus
from streamtune.registry.records import (
    AliasEvent,
    ApiToken,
    Lease,
    ModelVersion,
    OffsetReset,
    RunRecord,
    RunStatus,
    SeenKey,
    SpecRecord,
)

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
    def put_spec(self, spec: JobSpec) -> SpecRecord:
        """Store a JobSpec under its name, replacing any earlier one (a paused spec stays paused).

        Example:
            >>> from streamtune.registry import open_registry
            >>> from streamtune.config.jobspec import JobSpec
            >>> spec = JobSpec.model_validate({"name": "ctr", "dataset": {"name": "clicks", "label": "y"},
            ...     "job": {"entrypoint": "jobs.x:Job"}, "serve": {"app": "ctr"}, "sweep": {"metric": "auc",
            ...     "mode": "max", "space": {"a": {"type": "int", "low": 1, "high": 3}}}})
            >>> reg = open_registry("sqlite:///:memory:"); _ = reg.put_spec(spec)
            >>> reg.get_spec("ctr").spec.sweep.metric
            'auc'
        """

    @abstractmethod
    def set_spec_paused(self, name: str, paused: bool) -> SpecRecord:
        """Pause (no new runs start) or resume a stored spec.

        Raises:
            RegistryError: no spec has that name.
        """

    @abstractmethod
    def set_spec_health(self, name: str, *, error: str | None, retry_at: float | None = None) -> SpecRecord:
        """Record that the controller could not advance spec ``name`` (``error``; retry after ``retry_at``), which
        counts one more failure, or that it recovered (``error=None``: error, failures and retry_at cleared).

        Raises:
            RegistryError: no spec has that name.
        """

    @abstractmethod
    def delete_spec(self, name: str) -> bool:
        """Remove spec ``name`` with its open window and seen keys; its runs, models and aliases stay.

        Returns:
            False if no spec had that name.
        """

    @abstractmethod
    def get_spec(self, name: str) -> SpecRecord | None:
        """Return the spec stored under ``name``, or None."""

    @abstractmethod
    def list_specs(self) -> list[SpecRecord]:
        """Return every stored spec, ordered by name."""

    # -- the exactly-once core ---------------------------------------------------------------------

    @abstractmethod
    def commit_window(
        self,
        group: str,
        offsets: dict[tuple[str, int], int],
        windows: dict[str, dict[str, Any] | None],
        new_runs: list[RunRecord],
        seen: list[SeenKey] | None = None,
        *,
        window_events: dict[str, list[Any]] | None = None,
    ) -> list[str]:
        """Store offsets, window state and events, new runs and seen keys in ONE transaction: all of it, or none.

        Args:
            group: Kafka consumer group the offsets belong to.
            offsets: ``(topic, partition) -> next offset to read``; upserted. An offset below the stored one
                raises: stored offsets only move forward, except through :meth:`reset_offsets`.
            windows: ``window key -> state``; each given key's state is replaced (its ``events`` list too),
                and ``{}`` or ``None`` deletes it with its events. Keys not given are left alone.
            new_runs: Runs to insert. A run whose ``run_id`` exists is skipped (idempotent replay), but
                one whose dataset or offsets differ from the stored run's raises, since its id collides.
            seen: Event ids and normalized URIs of the closed windows, for deduplication across windows;
                a key already stored for its spec is left as it is.
            window_events: ``window key -> events`` appended, in order, to the ``events`` list of a window
                that is stored (or given in ``windows``): a poll writes only its new events, not the whole
                window again. :meth:`load_windows` returns them in the window's ``events``.

        Returns:
            The run ids actually inserted, in the order given.

        Raises:
            RegistryError: the transaction failed (or events were appended to a window with no state); nothing
                was stored.

        Example:
            >>> from streamtune.registry import RunRecord, open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> run = RunRecord(run_id="r-1", spec_name="ctr", dataset="clicks", offsets={"d:0": [0, 9]})
            >>> reg.commit_window("g", {("d", 0): 10}, {"ctr": {}}, [run])
            ['r-1']
            >>> reg.commit_window("g", {("d", 0): 10}, {}, [run]), reg.load_offsets("g")
            ([], {('d', 0): 10})
            >>> _ = reg.commit_window("g", {("d", 0): 11}, {"ctr": {"opened_at": 1.0, "events": [{"offset": 10}]}}, [])
            >>> _ = reg.commit_window("g", {("d", 0): 12}, {}, [], window_events={"ctr": [{"offset": 11}]})
            >>> reg.load_windows()
            {'ctr': {'events': [{'offset': 10}, {'offset': 11}], 'opened_at': 1.0}}
        """

    @abstractmethod
    def seen_keys(self, spec_name: str, keys: list[str], *, since: float | None = None) -> set[str]:
        """Return which of ``keys`` spec ``spec_name`` has already seen in a closed window (at ``since`` or later).

        Example:
            >>> from streamtune.registry import RunRecord, SeenKey, open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> run = RunRecord(run_id="r-1", spec_name="ctr", dataset="d", offsets={"t:0": [0, 0]})
            >>> _ = reg.commit_window("g", {("t", 0): 1}, {}, [run], seen=[SeenKey(spec_name="ctr", key="id:e1",
            ...                                                                  run_id="r-1")])
            >>> reg.seen_keys("ctr", ["id:e1", "id:e2"]), reg.seen_keys("other", ["id:e1"])
            ({'id:e1'}, set())
        """

    @abstractmethod
    def purge_seen(self, older_than: float) -> int:
        """Forget seen keys first seen before ``older_than`` (Unix time); return how many were forgotten."""

    @abstractmethod
    def load_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """Return ``(topic, partition) -> next offset`` stored for ``group`` (empty if none)."""

    @abstractmethod
    def reset_offsets(
        self, group: str, offsets: dict[tuple[str, int], int], *, reason: str, actor: str
    ) -> list[OffsetReset]:
        """Set stored offsets to any value, backwards too, and record each move with who and why.

        Raises:
            RegistryError: ``reason`` is empty.

        Example:
            >>> from streamtune.registry import open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> _ = reg.commit_window("g", {("t", 0): 50}, {}, [])
            >>> [r.previous for r in reg.reset_offsets("g", {("t", 0): 0}, reason="topic recreated", actor="ops")]
            [50]
            >>> reg.load_offsets("g")
            {('t', 0): 0}
        """

    @abstractmethod
    def offset_resets(self, group: str) -> list[OffsetReset]:
        """Return the recorded offset resets of ``group``, oldest first."""

    @abstractmethod
    def load_windows(self) -> dict[str, dict[str, Any]]:
        """Return every stored window state, by window key, its appended events last in its ``events`` list."""

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
        *,
        oldest_first: bool = False,
    ) -> list[RunRecord]:
        """Return runs, newest first (oldest first for a queue), optionally of one spec and of given status(es).

        Raises:
            RegistryError: ``status`` names no :class:`RunStatus`, or ``limit`` is below 1.

        Example:
            >>> from streamtune.registry import open_registry
            >>> open_registry("sqlite:///:memory:").list_runs(status=["running", "pending"])
            []
        """

    @abstractmethod
    def count_runs(self, spec_name: str | None = None,
                   status: RunStatus | str | list[RunStatus | str] | None = None) -> int:
        """Count runs, optionally of one spec and of given status(es), with no limit (e.g. a spec's queue depth).

        Raises:
            RegistryError: ``status`` names no :class:`RunStatus`.

        Example:
            >>> from streamtune.registry import open_registry
            >>> open_registry("sqlite:///:memory:").count_runs("ctr", status="pending")
            0
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
        manifest_sha256: str | None = None,
    ) -> ModelVersion:
        """Register a new version of ``name`` (1, 2, ...); registering the same run again returns it.

        ``manifest_sha256`` is the sha256 of the artifact's ``MANIFEST.json`` bytes (64 lower-case hex digits);
        every load of the version checks the manifest against it. A second registration of the same run returns
        the first one as it was stored, digest included.

        Raises:
            RegistryError: ``name`` is empty, or ``manifest_sha256`` is not a sha256.

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

    # -- commands ----------------------------------------------------------------------------------

    @abstractmethod
    def append_command(self, command: Command, *, actor: str, reason: str = "") -> CommandRecord:
        """Append a pending command: the only write a caller makes. Never fenced.

        Raises:
            RegistryError: ``actor`` is empty.

        Example:
            >>> from streamtune.registry import open_registry
            >>> from streamtune.registry.commands import Promote
            >>> reg = open_registry("sqlite:///:memory:")
            >>> reg.append_command(Promote(model="ctr", version=2), actor="ana", reason="hotfix").status.value
            'pending'
        """

    @abstractmethod
    def get_command(self, command_id: str) -> CommandRecord | None:
        """Return one command, or None."""

    @abstractmethod
    def list_commands(
        self, status: CommandStatus | str | list[CommandStatus | str] | None = None, limit: int = 100,
        *, oldest_first: bool = False,
    ) -> list[CommandRecord]:
        """Return commands newest first (``oldest_first`` for the controller's queue), optionally by status."""

    @abstractmethod
    def start_command(self, command_id: str, controller: str) -> CommandRecord:
        """Mark a command ``running`` under ``controller``.

        Raises:
            RegistryError: no such command.
        """

    @abstractmethod
    def finish_command(
        self, command_id: str, *, outcome: CommandOutcome | None = None, error: str | None = None
    ) -> CommandRecord:
        """Record the end of a command: ``succeeded`` with ``outcome``, or ``failed`` with ``error``.

        Raises:
            RegistryError: no such command, or not exactly one of ``outcome`` and ``error`` given.
        """

    # -- the controller lease and fencing ----------------------------------------------------------

    @abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take lease ``name`` for ``ttl_s`` seconds if it is free, lapsed, or already ``holder``'s.

        A new holder gets the previous token plus one; the same holder keeps its token. Returns None while
        another holder's lease is still valid.
        """

    @abstractmethod
    def renew_lease(self, lease: Lease, ttl_s: float) -> Lease:
        """Extend ``lease`` by ``ttl_s`` from now.

        Raises:
            FencedError: another holder took the lease meanwhile.
        """

    @abstractmethod
    def release_lease(self, lease: Lease) -> None:
        """Let ``lease`` lapse now so a standby takes over at once; a no-op if it is no longer current."""

    @abstractmethod
    def get_lease(self, name: str) -> Lease | None:
        """Return lease ``name`` as stored (maybe lapsed), or None if nobody ever took it."""

    @abstractmethod
    def fence(self, lease: Lease | None) -> None:
        """Make every later write through this object check, in its own transaction, that ``lease`` is current.

        A write from a stale leader raises :class:`~streamtune.errors.FencedError` and changes nothing.
        Commands appended and lease calls are not fenced. ``None`` lifts the fence.

        Example:
            >>> from streamtune.errors import FencedError
            >>> from streamtune.registry import open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> old = reg.acquire_lease("controller", "a", ttl_s=0.0)
            >>> new = reg.acquire_lease("controller", "b", ttl_s=10)
            >>> reg.fence(old)
            >>> try:
            ...     reg.commit_window("g", {("t", 0): 1}, {}, [])
            ... except FencedError as exc:
            ...     print(exc.headline)
            write refused: a wrote with lease token 1, but b holds token 2
        """

    # -- API tokens (written by an operator's CLI beside the registry; never fenced) --------------------

    @abstractmethod
    def add_token(self, name: str, token_sha256: str) -> ApiToken:
        """Store the sha256 of a new API token that belongs to ``name``.

        Example:
            >>> import hashlib
            >>> from streamtune.registry import open_registry
            >>> reg = open_registry("sqlite:///:memory:")
            >>> digest = hashlib.sha256(b"st_secret").hexdigest()
            >>> reg.add_token("ana", digest).name, reg.find_token(digest).name
            ('ana', 'ana')
            >>> [t.active for t in reg.revoke_tokens("ana")], reg.find_token(digest)
            ([False], None)
        """

    @abstractmethod
    def find_token(self, token_sha256: str) -> ApiToken | None:
        """Return the active token with this hash, or None (unknown or revoked)."""

    @abstractmethod
    def list_tokens(self, *, include_revoked: bool = False) -> list[ApiToken]:
        """Return the active tokens (all, with ``include_revoked``), oldest first."""

    @abstractmethod
    def revoke_tokens(self, name: str) -> list[ApiToken]:
        """Revoke every active token of ``name``; return them (empty if there were none)."""

    # -- lifecycle ---------------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release the connection; later calls raise RegistryError. Closing twice is fine."""

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
