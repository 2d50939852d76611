"""The control-plane tables of the SQL registries: commands, the controller lease, offset resets and API tokens."""

from __future__ import annotations

import time
from typing import Any

from pydantic import TypeAdapter

from streamtune.errors import FencedError, RegistryError
from streamtune.registry.commands import (
    Command,
    CommandOutcome,
    CommandRecord,
    CommandStatus,
    new_command_id,
)
from streamtune.registry.dialect import Row, Tx, insert_sql, upsert_sql
from streamtune.registry.records import ApiToken, Lease, OffsetReset
from streamtune.registry.schema import _dumps, _loads
from streamtune.registry.sql_base import SqlBase

_COMMAND = TypeAdapter(Command)
_LEASE = "SELECT * FROM leases WHERE name = ?"
_LEASE_COLUMNS = ("name", "holder", "token", "acquired_at", "renewed_at", "expires_at")
_OFFSET_UPSERT = upsert_sql("consumer_offsets", ("grp", "topic", "part", "next_offset", "updated_at"),
                            key=("grp", "topic", "part"))


def _command_statuses(status: CommandStatus | str | list[CommandStatus | str]) -> list[str]:
    items = status if isinstance(status, list | tuple | set | frozenset) else [status]
    try:
        return [CommandStatus(item).value for item in items]
    except ValueError:
        allowed = ", ".join(s.value for s in CommandStatus)
        raise RegistryError(f'Got "{status}" for command status; must be one of {allowed}') from None


class SqlControl(SqlBase):
    """Commands, leases, offset resets and tokens (mixed into :class:`~streamtune.registry.sql.SqlStore`)."""

    # -- commands ----------------------------------------------------------------------------------

    @staticmethod
    def _command_from(row: Row) -> CommandRecord:
        outcome = _loads(row["outcome"])
        return CommandRecord(
            id=row["id"], command=_COMMAND.validate_python(_loads(row["body"])), actor=row["actor"],
            reason=row["reason"], status=CommandStatus(row["status"]),
            outcome=CommandOutcome.model_validate(outcome) if outcome else None, error=row["error"],
            controller=row["controller"], created_at=row["created_at"], started_at=row["started_at"],
            finished_at=row["finished_at"],
        )  # fmt: skip

    def append_command(self, command: Command, *, actor: str, reason: str = "") -> CommandRecord:
        """Append a pending command (see :meth:`Registry.append_command`)."""
        if not actor:
            raise RegistryError('Got "" for the actor of a command; must name who asks')
        record = CommandRecord(id=new_command_id(), command=command, actor=actor, reason=reason)
        body = _dumps(command.model_dump(mode="json"), f"command {record.id}")
        with self._tx(fenced=False) as tx:
            tx.run(
                insert_sql("commands", ("id", "kind", "body", "actor", "reason", "status", "created_at")),
                (record.id, command.kind, body, actor, reason, record.status.value, record.created_at),
            )
        return record

    def get_command(self, command_id: str) -> CommandRecord | None:
        """Return one command, or None."""
        rows = self._query("SELECT * FROM commands WHERE id = ?", (command_id,))
        return self._command_from(rows[0]) if rows else None

    def list_commands(
        self, status: CommandStatus | str | list[CommandStatus | str] | None = None, limit: int = 100,
        *, oldest_first: bool = False,
    ) -> list[CommandRecord]:
        """Return commands newest first (or oldest first), optionally of the given status(es)."""
        if limit < 1:
            raise RegistryError(f'Got "{limit}" for limit; must be at least 1')
        where, params = "", []
        if status is not None:
            values = _command_statuses(status)
            where, params = f"WHERE status IN ({', '.join('?' * len(values))}) ", values
        order = "ASC" if oldest_first else "DESC"
        rows = self._query(f"SELECT * FROM commands {where}ORDER BY seq {order} LIMIT ?", (*params, limit))
        return [self._command_from(r) for r in rows]

    def start_command(self, command_id: str, controller: str) -> CommandRecord:
        """Mark a command running under ``controller`` (fenced)."""
        return self._set_command(command_id, "status = ?, started_at = ?, controller = ?",
                                 (CommandStatus.RUNNING.value, time.time(), controller))

    def finish_command(
        self, command_id: str, *, outcome: CommandOutcome | None = None, error: str | None = None
    ) -> CommandRecord:
        """Record a command's end: succeeded with ``outcome``, or failed with ``error`` (fenced)."""
        if (outcome is None) == (error is None):
            raise RegistryError(f"finishing command {command_id} needs exactly one of outcome or error")
        status = CommandStatus.FAILED if error is not None else CommandStatus.SUCCEEDED
        text = None if outcome is None else _dumps(outcome.model_dump(mode="json"), f"command {command_id}")
        return self._set_command(command_id, "status = ?, outcome = ?, error = ?, finished_at = ?",
                                 (status.value, text, error, time.time()))

    def _set_command(self, command_id: str, assignments: str, values: tuple[Any, ...]) -> CommandRecord:
        with self._tx() as tx:
            if tx.run(f"UPDATE commands SET {assignments} WHERE id = ?", (*values, command_id)) != 1:
                raise RegistryError(f"no command {command_id} in {self.url}")
            return self._command_from(self._must(tx.one("SELECT * FROM commands WHERE id = ?", (command_id,))))

    # -- the controller lease ----------------------------------------------------------------------

    @staticmethod
    def _lease_from(row: Row) -> Lease:
        return Lease.model_validate(dict(row))

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take the lease if it is free, lapsed or already ours (see :meth:`Registry.acquire_lease`)."""
        with self._tx(fenced=False) as tx:
            row = tx.one(_LEASE + tx.for_update, (name,))  # Postgres: takeovers of one lease take turns
            if row is None:
                now = time.time()
                values = (name, holder, 1, now, now, now + ttl_s)
                if tx.run(insert_sql("leases", _LEASE_COLUMNS, ignore=("name",)), values) == 1:
                    return self._lease_from(dict(zip(_LEASE_COLUMNS, values, strict=True)))
                # another process created it meanwhile (Postgres; SQLite's writes never interleave)
                row = self._must(tx.one(_LEASE + tx.for_update, (name,)))
            now = time.time()
            if row["holder"] == holder:
                tx.run("UPDATE leases SET renewed_at = ?, expires_at = ? WHERE name = ?", (now, now + ttl_s, name))
            elif row["expires_at"] <= now:
                tx.run("UPDATE leases SET holder = ?, token = token + 1, acquired_at = ?, renewed_at = ?, "
                       "expires_at = ? WHERE name = ?", (holder, now, now, now + ttl_s, name))
            else:
                return None
            return self._lease_from(self._must(tx.one(_LEASE, (name,))))

    def renew_lease(self, lease: Lease, ttl_s: float) -> Lease:
        """Extend a lease we still hold; raise FencedError if another holder took it."""
        with self._tx(fenced=False) as tx:
            self._require_holder(tx, lease)
            now = time.time()
            tx.run("UPDATE leases SET renewed_at = ?, expires_at = ? WHERE name = ?", (now, now + ttl_s, lease.name))
            return self._lease_from(self._must(tx.one(_LEASE, (lease.name,))))

    def release_lease(self, lease: Lease) -> None:
        """Let the lease lapse now, so a standby takes over at once; a no-op if it is no longer ours."""
        with self._tx(fenced=False) as tx:
            tx.run("UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ?",
                   (lease.name, lease.holder, lease.token))

    def get_lease(self, name: str) -> Lease | None:
        """Return the lease as stored (maybe lapsed), or None if nobody ever took it."""
        rows = self._query(_LEASE, (name,))
        return self._lease_from(rows[0]) if rows else None

    @staticmethod
    def _require_holder(tx: Tx, lease: Lease) -> None:
        row = tx.one(_LEASE + tx.for_update, (lease.name,))
        if row is None or (row["holder"], row["token"]) != (lease.holder, lease.token):
            now = f"{row['holder']} holds token {row['token']}" if row else "nobody holds it"
            raise FencedError(f"lease {lease.name} lost: {lease.holder} had token {lease.token}, but {now}")

    # -- offset resets -----------------------------------------------------------------------------

    def reset_offsets(
        self, group: str, offsets: dict[tuple[str, int], int], *, reason: str, actor: str
    ) -> list[OffsetReset]:
        """Move stored offsets anywhere, backwards too, and record each move (fenced)."""
        if not reason:
            raise RegistryError('Got "" for the reason of an offset reset; must say why')
        resets = []
        with self._tx() as tx:
            tx.lock("offsets", group)  # the same lock as commit_window's: the two never interleave
            for (topic, part), offset in sorted(offsets.items()):
                row = tx.one("SELECT next_offset FROM consumer_offsets WHERE grp = ? AND topic = ? AND part = ?",
                             (group, topic, part))
                reset = OffsetReset(group=group, topic=topic, partition=part, offset=offset, reason=reason,
                                    actor=actor, previous=row["next_offset"] if row else None)
                tx.run(_OFFSET_UPSERT, (group, topic, part, offset, reset.at))
                tx.run(insert_sql("offset_resets", ("grp", "topic", "part", "previous", "next_offset", "reason",
                                                    "actor", "at")),
                       (group, topic, part, reset.previous, offset, reason, actor, reset.at))
                resets.append(reset)
        return resets

    def offset_resets(self, group: str) -> list[OffsetReset]:
        """Return the recorded resets of ``group``, oldest first."""
        rows = self._query("SELECT * FROM offset_resets WHERE grp = ? ORDER BY seq", (group,))
        return [OffsetReset(group=r["grp"], topic=r["topic"], partition=r["part"], previous=r["previous"],
                            offset=r["next_offset"], reason=r["reason"], actor=r["actor"], at=r["at"]) for r in rows]

    # -- API tokens --------------------------------------------------------------------------------

    @staticmethod
    def _token_from(row: Row) -> ApiToken:
        return ApiToken(name=row["name"], token_sha256=row["sha256"], created_at=row["created_at"],
                        revoked_at=row["revoked_at"])

    def add_token(self, name: str, token_sha256: str) -> ApiToken:
        """Store a new token's hash under ``name`` (see :meth:`Registry.add_token`)."""
        if not name or len(token_sha256) != 64:
            raise RegistryError(f'Got "{name}" / a {len(token_sha256)}-character hash for a token; need a name '
                                "and a hex sha256")
        token = ApiToken(name=name, token_sha256=token_sha256)
        with self._tx(fenced=False) as tx:
            tx.run(insert_sql("api_tokens", ("name", "sha256", "created_at")), (name, token_sha256, token.created_at))
        return token

    def find_token(self, token_sha256: str) -> ApiToken | None:
        """Return the active token with this hash, or None."""
        rows = self._query("SELECT * FROM api_tokens WHERE sha256 = ? AND revoked_at IS NULL", (token_sha256,))
        return self._token_from(rows[0]) if rows else None

    def list_tokens(self, *, include_revoked: bool = False) -> list[ApiToken]:
        """Return tokens (active ones unless ``include_revoked``), oldest first."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL "
        return [self._token_from(r) for r in self._query(f"SELECT * FROM api_tokens {where}ORDER BY seq")]

    def revoke_tokens(self, name: str) -> list[ApiToken]:
        """Revoke every active token of ``name``; return them as revoked (empty if there were none)."""
        now = time.time()
        with self._tx(fenced=False) as tx:
            rows = tx.all(f"SELECT * FROM api_tokens WHERE name = ? AND revoked_at IS NULL{tx.for_update}", (name,))
            tx.run("UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name))
        return [self._token_from(r).model_copy(update={"revoked_at": now}) for r in rows]
