"""Typed records that cross the seam between the controller, :class:`ModelService`, the board and replicas.

Pure pydantic, no Ray: the controller, the registry and the CLI can import them without starting anything.

Example:
    >>> AccessPolicy(required=True, token_sha256=(AccessPolicy.hash_token("s3cret"),)).allows("Bearer s3cret")
    True
    >>> ref = ModelRef(version=3, uri="/artifacts/sales/3")
    >>> ref
    ModelRef(version=3, uri='/artifacts/sales/3', manifest_sha256=None)
    >>> RequestCounts(requests=200, errors=3).error_rate
    0.015
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamtune.errors import FencedError, SwapError

Version = int | str
"""A model version id: the registry's integer, or any string a caller picks."""

SwapKind = Literal["swap", "rollback", "deploy", "ensure"]
EnsureAction = Literal["none", "policy", "deployed", "board_recreated", "swapped", "busy"]

__all__ = [
    "LATENCY_BUCKETS_MS", "PREDICTION_EDGES", "AccessPolicy", "BoardSnapshot", "BoardView", "CanaryReport",
    "EnsureAction", "EnsureResult",
    "InputSchema", "LoadFailure", "ModelRef", "ReplicaReport", "ReplicaStatus", "RequestCounts", "ServiceStatus",
    "StaleFenceError", "SwapFailure", "SwapKind", "SwapRecord", "SwapReport", "Version", "VersionFigures",
    "WatchReport", "prediction_histogram",
]

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000, 10000, 30000,
)
"""Upper bounds (ms) of the latency histogram buckets replicas keep per version; one more bucket holds the rest."""

_POSITIVE_EDGES = tuple(float(f"{m}e{e}") for e in range(-4, 8) for m in (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9))
PREDICTION_EDGES: tuple[float, ...] = (*(-x for x in reversed(_POSITIVE_EDGES)), 0.0, *_POSITIVE_EDGES)
"""Upper bounds of the fixed prediction histogram bins replicas keep per version (and the monitoring bins the gate's
holdout predictions by): 0, and 1, 1.5, 2, 3, ... 9 per decade from 1e-4 to 9e7 on both sides of it. Bin ``i`` holds
values in ``(edges[i-1], edges[i]]``; one more bin holds the rest. Never change them: figures from replicas of
different releases are added up bin by bin."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccessPolicy(_Record):
    """Who may call a model endpoint and how big a request may be; every replica enforces its board's policy.

    Tokens are never stored: only the hex sha256 of each accepted one. ``required=False`` (the default, for a
    platform running without authentication) lets every request through; ``required=True`` with no hashes
    lets none through.

    Example:
        >>> policy = AccessPolicy(required=True, token_sha256=(AccessPolicy.hash_token("good"),), max_rows=5)
        >>> policy.allows("Bearer good"), policy.allows("Bearer bad"), policy.allows(None)
        (True, False, False)
        >>> AccessPolicy().allows(None)
        True
    """

    required: bool = Field(False, description="Whether requests need 'Authorization: Bearer <token>'.")
    token_sha256: tuple[str, ...] = Field(
        (), description="Hex sha256 of each accepted token (lower case); the tokens themselves are never kept."
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest request body, in bytes (else 413).")
    max_rows: int = Field(10_000, ge=1, description="Most rows one request may carry (else 422).")

    @field_validator("token_sha256")
    @classmethod
    def _hex_digests(cls, hashes: tuple[str, ...]) -> tuple[str, ...]:
        normalized = tuple(h.strip().lower() for h in hashes)
        bad = [h for h in normalized if len(h) != 64 or any(c not in "0123456789abcdef" for c in h)]
        if bad:
            raise ValueError(f"token_sha256 holds {len(bad)} value(s) that are not 64 hex digits (a sha256)")
        return tuple(dict.fromkeys(normalized))

    @staticmethod
    def hash_token(token: str) -> str:
        """The hex sha256 of ``token``, as ``token_sha256`` holds it.

        Example:
            >>> AccessPolicy.hash_token("good")[:16]
            '770e607624d68926'
        """
        return hashlib.sha256(token.encode()).hexdigest()

    def allows(self, authorization_header: str | None) -> bool:
        """Whether a request with this ``Authorization`` header value may be answered.

        The token's hash is compared with every accepted hash in constant time (``hmac.compare_digest``), and
        all of them are compared, so timing tells nothing about which (or whether one) matched.

        Example:
            >>> policy = AccessPolicy(required=True, token_sha256=(AccessPolicy.hash_token("good"),))
            >>> [policy.allows(h) for h in ("Bearer good", "bearer good", "Basic good", "Bearer ", "good")]
            [True, True, False, False, False]
        """
        if not self.required:
            return True
        scheme, _, token = (authorization_header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        digest = self.hash_token(token)
        matched = False
        for accepted in self.token_sha256:
            matched |= hmac.compare_digest(digest, accepted)
        return matched


class ModelRef(_Record):
    """One model version and where its artifact lives.

    Example:
        >>> ModelRef(version=1, uri="/a/1") == ModelRef(version=1, uri="/a/1")
        True
        >>> str(ModelRef(version="v2", uri="s3://b/2"))
        'v2 (s3://b/2)'
    """

    version: Version = Field(description="The version id; responses carry it.")
    uri: str = Field(description="Folder or file://, s3://, gs:// URI of the artifact (with its manifest).")
    manifest_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$",
        description="The registry's sha256 of the artifact's MANIFEST.json; replicas check the manifest against "
        "it before the files and refuse a mismatch. None: only the files are checked against the manifest.",
    )

    def __str__(self) -> str:
        return f"{self.version} ({self.uri})"


class RequestCounts(_Record):
    """Requests one version answered, its model errors, client errors and a latency histogram.

    ``errors`` are the model's own failures (an exception in predict, NaN or inf out of it); a request the
    client got wrong (missing or mistyped feature, 4xx) is a ``client_error`` and never counts against the model.
    ``latency_ms`` holds counts per :data:`LATENCY_BUCKETS_MS` bucket (one more for slower), so replicas' figures
    add up and percentiles come out of the sum.

    Example:
        >>> RequestCounts(requests=3, errors=1) + RequestCounts(requests=1, errors=0)
        RequestCounts(requests=4, errors=1, client_errors=0, latency_ms=(), predictions={})
        >>> RequestCounts(requests=0, errors=0).error_rate
        0.0
        >>> counts = RequestCounts.timed([4.0] * 98 + [120.0, 120.0])
        >>> counts.p50_ms, counts.p99_ms
        (5.0, 150.0)
    """

    requests: int = Field(0, ge=0, description="Requests the version's model ran on (answered or failed).")
    errors: int = Field(0, ge=0, description="Of those, the model errors: predict raised, or gave NaN/inf.")
    client_errors: int = Field(
        0, ge=0, description="Requests refused before the model ran for the client's mistake (missing feature...)."
    )
    latency_ms: tuple[int, ...] = Field(
        (), description="Predict latency histogram: counts per LATENCY_BUCKETS_MS bucket, plus one for slower."
    )
    predictions: dict[int, int] = Field(
        default_factory=dict, description="Numeric predictions per PREDICTION_EDGES bin (index -> count; empty bins "
        "left out), for drift against the gate's holdout predictions; class labels and lists are not binned.",
    )

    @classmethod
    def timed(cls, latencies_ms: list[float], errors: int = 0) -> RequestCounts:
        """Counts of ``len(latencies_ms)`` requests with those latencies (for tests and examples)."""
        buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        for ms in latencies_ms:
            buckets[latency_bucket(ms)] += 1
        return cls(requests=len(latencies_ms), errors=errors, latency_ms=tuple(buckets))

    def __add__(self, other: RequestCounts) -> RequestCounts:
        return RequestCounts(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            client_errors=self.client_errors + other.client_errors,
            latency_ms=_merge(self.latency_ms, other.latency_ms, 1),
            predictions=_merge_bins(self.predictions, other.predictions, 1),
        )

    def __sub__(self, other: RequestCounts) -> RequestCounts:
        return RequestCounts(
            requests=max(0, self.requests - other.requests),
            errors=max(0, self.errors - other.errors),
            client_errors=max(0, self.client_errors - other.client_errors),
            latency_ms=_merge(self.latency_ms, other.latency_ms, -1),
            predictions=_merge_bins(self.predictions, other.predictions, -1),
        )

    @property
    def error_rate(self) -> float:
        """``errors / requests`` rounded to 4 digits; 0.0 without requests."""
        return round(self.errors / self.requests, 4) if self.requests else 0.0

    def percentile_ms(self, q: float) -> float | None:
        """The upper bound (ms) of the bucket holding the ``q`` quantile (0-1); None without latencies."""
        total = sum(self.latency_ms)
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.latency_ms):
            seen += count
            if seen >= rank and count:
                bound = LATENCY_BUCKETS_MS[index] if index < len(LATENCY_BUCKETS_MS) else 2 * LATENCY_BUCKETS_MS[-1]
                return float(bound)
        return float(2 * LATENCY_BUCKETS_MS[-1])

    @property
    def p50_ms(self) -> float | None:
        """Median predict latency (bucket upper bound, ms); None without latencies."""
        return self.percentile_ms(0.5)

    @property
    def p99_ms(self) -> float | None:
        """99th percentile predict latency (bucket upper bound, ms); None without latencies."""
        return self.percentile_ms(0.99)

    def figures(self, version: Version) -> VersionFigures:
        """These counts as one version's live figures."""
        return VersionFigures(
            version=version, requests=self.requests, model_errors=self.errors, client_errors=self.client_errors,
            error_rate=self.error_rate, p50_ms=self.p50_ms, p99_ms=self.p99_ms,
        )


def latency_bucket(ms: float) -> int:
    """Index of the :data:`LATENCY_BUCKETS_MS` bucket that ``ms`` falls in.

    Example:
        >>> latency_bucket(0.4), latency_bucket(1.0), latency_bucket(1.5), latency_bucket(10**6)
        (0, 0, 1, 24)
    """
    return bisect.bisect_left(LATENCY_BUCKETS_MS, ms)


def prediction_histogram(values: Sequence[Any]) -> dict[int, int]:
    """Counts of ``values`` per :data:`PREDICTION_EDGES` bin (empty bins left out); {} unless all are numbers.

    Example:
        >>> h = prediction_histogram([0.52, 0.55, 120.0, -3.0])
        >>> [(PREDICTION_EDGES[i], n) for i, n in sorted(h.items())]
        [(-3.0, 1), (0.6, 2), (150.0, 1)]
        >>> prediction_histogram(["yes", "no"]), prediction_histogram([True]), prediction_histogram([])
        ({}, {}, {})
    """
    if not values or isinstance(values[0], bool | str):
        return {}
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):  # class labels, lists: nothing to bin
        return {}
    if array.ndim != 1:
        return {}
    bins, counts = np.unique(np.searchsorted(PREDICTION_EDGES, array, side="left"), return_counts=True)
    return {int(b): int(n) for b, n in zip(bins, counts, strict=True)}


def _merge_bins(a: dict[int, int], b: dict[int, int], sign: int) -> dict[int, int]:
    out = dict(a)
    for key, count in b.items():
        out[key] = max(0, out.get(key, 0) + sign * count)
    return {k: v for k, v in out.items() if v}


def _merge(a: tuple[int, ...], b: tuple[int, ...], sign: int) -> tuple[int, ...]:
    if not b:
        return a
    if not a:
        return b if sign > 0 else ()
    return tuple(max(0, x + sign * y) for x, y in zip(a, b, strict=True))


class VersionFigures(_Record):
    """One version's live figures, summed over the live replicas (what the monitoring exports).

    Example:
        >>> RequestCounts.timed([3.0, 40.0], errors=1).figures(7).p99_ms
        50.0
    """

    version: Version = Field(description="The model version.")
    requests: int = Field(description="Requests its model ran on (canary, shadow and full traffic).")
    model_errors: int = Field(description="Of those, predict raised or returned NaN/inf.")
    client_errors: int = Field(description="Requests refused for the client's mistake (not counted as errors).")
    error_rate: float = Field(description="model_errors / requests (0.0 without requests).")
    p50_ms: float | None = Field(description="Median predict latency, ms (bucket upper bound); None: no requests.")
    p99_ms: float | None = Field(description="99th percentile predict latency, ms (bucket bound); None: no requests.")


class InputSchema(_Record):
    """The feature columns a model endpoint needs, and their Arrow types (None: any type).

    A request missing one, or giving one a value of another type, is refused with a 422 naming the column,
    before any model runs.

    Example:
        >>> InputSchema(columns={"x": "double", "tag": None}).columns["x"]
        'double'
    """

    columns: dict[str, str | None] = Field(
        description="Feature column -> Arrow type name as pyarrow prints it ('double', 'int64', 'string'), or None."
    )


class LoadFailure(_Record):
    """Why a replica could not load a version, and during which swap."""

    generation: int = Field(description="The board generation (swap) the load belonged to.")
    uri: str = Field(description="The artifact it tried to load.")
    reason: str = Field(description="The exception, as 'Type: message'.")
    attempts: int = Field(1, ge=1, description="Loads of this version tried so far on the replica.")
    retry_in_s: float | None = Field(
        None, description="Seconds after this failure that the replica tries again (backoff); None: it will not."
    )


class BoardView(_Record):
    """What a replica needs from the board: which models to hold, which to serve, the canary share.

    Example:
        >>> view = BoardView(board_id="b1", epoch=4, generation=2, target=ModelRef(version=2, uri="/a/2"))
        >>> [m.version for m in view.wanted()]
        [2]
    """

    board_id: str = Field(description="The board's incarnation: a random id made when the board actor started.")
    epoch: int = Field(description="Bumped on every change a replica must apply.")
    generation: int = Field(description="Number of the latest swap the board started.")
    active: ModelRef | None = Field(None, description="The model every replica serves.")
    previous: ModelRef | None = Field(None, description="The model served before; kept loaded for rollback.")
    target: ModelRef | None = Field(None, description="The model being loaded beside the active one.")
    canary_percent: float = Field(0.0, description="Share of requests (0-100) the loaded target answers.")
    shadow_percent: float = Field(
        0.0,
        description="Share of requests (0-100) also mirrored to the loaded target; clients get the active's answer.",
    )
    policy: AccessPolicy = Field(
        default_factory=AccessPolicy, description="The access policy every replica enforces on requests."
    )

    def wanted(self) -> list[ModelRef]:
        """The models a replica should hold: active, previous and target, without repeats."""
        seen: dict[Version, ModelRef] = {}
        for model in (self.active, self.previous, self.target):
            if model is not None:
                seen[model.version] = model
        return list(seen.values())


class ReplicaReport(_Record):
    """What a replica tells its board after each change: what it holds, serves, loads and failed to load."""

    board_id: str = Field(description="The board incarnation this report is for; others ignore it.")
    applied_epoch: int = Field(description="The newest board epoch this replica has fully applied.")
    active: Version | None = Field(None, description="The version it serves.")
    loaded: dict[Version, str] = Field(default_factory=dict, description="Loaded versions and their URIs.")
    loading: list[Version] = Field(default_factory=list, description="Versions being loaded now.")
    failures: dict[Version, LoadFailure] = Field(default_factory=dict, description="Versions that failed to load.")
    counters: dict[Version, RequestCounts] = Field(default_factory=dict, description="Requests per version.")

    def holds(self, model: ModelRef) -> bool:
        """Whether this replica has ``model`` loaded (same version and URI).

        Example:
            >>> ReplicaReport(board_id="b", applied_epoch=1, loaded={1: "/a/1"}).holds(ModelRef(version=1, uri="/a/1"))
            True
        """
        return self.loaded.get(model.version) == model.uri


class ReplicaStatus(_Record):
    """One replica as :meth:`VersionBoard.snapshot` shows it."""

    live: bool = Field(description="Heard from within the board's stale window.")
    seen_s_ago: float = Field(description="Seconds since its last heartbeat.")
    applied_epoch: int = Field(description="The newest board epoch it has fully applied.")
    active: Version | None = Field(None, description="The version it serves.")
    loaded: dict[Version, str] = Field(default_factory=dict, description="Loaded versions and their URIs.")
    loading: list[Version] = Field(default_factory=list, description="Versions being loaded now.")
    failures: dict[Version, LoadFailure] = Field(default_factory=dict, description="Versions that failed to load.")
    counters: dict[Version, RequestCounts] = Field(default_factory=dict, description="Requests per version.")


class SwapFailure(_Record):
    """The replica that refused a swap, and why."""

    replica: str = Field(description="The replica's id.")
    reason: str = Field(description="Its load failure, as 'Type: message'.")


class SwapRecord(BaseModel):
    """The timeline of one swap on the board's monotonic clock. The board updates it as the swap moves."""

    model_config = ConfigDict(extra="forbid")

    generation: int = Field(description="The swap's number on its board.")
    kind: SwapKind = Field(description="swap, rollback, deploy (desired version of a fresh board) or ensure.")
    version: Version = Field(description="The version swapped in.")
    uri: str = Field(description="Its artifact.")
    previous: Version | None = Field(None, description="The version active when the swap started.")
    auto_flip: bool = Field(True, description="Flip as soon as every live replica holds it (False: canary).")
    started: float = Field(description="When the board took the target.")
    loaded_at: float | None = Field(None, description="When every live replica held it.")
    flipped_at: float | None = Field(None, description="When the board made it active.")
    flip_epoch: int | None = Field(None, description="The epoch of the flip.")
    acked_at: float | None = Field(None, description="When every live replica had applied the flip.")
    failure: SwapFailure | None = Field(None, description="The replica that could not load it.")
    aborted: str | None = Field(None, description="Why the swap stopped (load failed, superseded, ...).")
    replicas: int = Field(0, description="Live replicas that took part.")

    @property
    def ref(self) -> ModelRef:
        """The model this swap brings in."""
        return ModelRef(version=self.version, uri=self.uri)


class BoardSnapshot(_Record):
    """Everything a board knows, for ``status()`` and for waiting on a swap."""

    app: str = Field(description="The Serve application.")
    board_id: str = Field(description="The board's incarnation.")
    epoch: int = Field(description="The board's epoch.")
    generation: int = Field(description="Number of the latest swap.")
    active: ModelRef | None = Field(None, description="The model every replica serves.")
    previous: ModelRef | None = Field(None, description="The model served before.")
    target: ModelRef | None = Field(None, description="The model being loaded (a swap in flight).")
    canary_percent: float = Field(0.0, description="Share of requests the target answers.")
    shadow_percent: float = Field(0.0, description="Share of requests mirrored to the target.")
    watching: int | None = Field(
        None, description="The generation whose post-promotion watch is running (a swap still in progress)."
    )
    watch_s_left: float = Field(0.0, description="Seconds left of that watch.")
    live_replicas: list[str] = Field(default_factory=list, description="Ids of the live replicas, sorted.")
    min_applied_epoch: int = Field(-1, description="The lowest applied epoch among live replicas.")
    replicas: dict[str, ReplicaStatus] = Field(default_factory=dict, description="Every replica it knows.")
    counters: dict[Version, RequestCounts] = Field(default_factory=dict, description="Live replicas' totals.")
    last_swap: SwapRecord | None = Field(None, description="The latest swap's timeline.")
    fence: int = Field(0, description="The highest writer fence the board has seen.")
    policy: AccessPolicy = Field(default_factory=AccessPolicy, description="The access policy replicas enforce.")

    def live(self) -> list[ReplicaStatus]:
        """The live replicas' statuses."""
        return [self.replicas[r] for r in self.live_replicas if r in self.replicas]

    def serving(self, model: ModelRef, replicas: int) -> bool:
        """Whether ``model`` is active and at least ``replicas`` live replicas all serve it.

        Example:
            >>> ref = ModelRef(version=1, uri="/a/1")
            >>> BoardSnapshot(app="m", board_id="b", epoch=0, generation=0).serving(ref, 1)
            False
        """
        live = self.live()
        return (
            self.active == model
            and len(live) >= replicas
            and all(r.active == model.version for r in live)
        )


class CanaryReport(_Record):
    """What an observation (canary and/or shadow) saw of the candidate, and the verdict."""

    percent: float = Field(description="Share of requests the candidate answered.")
    shadow_percent: float = Field(0.0, description="Share of requests mirrored to it (answers not returned).")
    observe_s: float = Field(description="The observation window, seconds.")
    requests: int = Field(description="Requests the candidate's model ran on in the window (canary and shadow).")
    errors: int = Field(description="Of those, model errors (exceptions, NaN/inf); client 4xx are not counted.")
    error_rate: float = Field(description="errors / requests (0.0 without requests).")
    max_error_rate: float = Field(description="The rollout's limit; above it the canary is rolled back.")
    p99_ms: float | None = Field(None, description="The candidate's p99 predict latency in the window, ms.")
    max_p99_ms: float | None = Field(None, description="The rollout's latency limit; None: none.")
    min_requests: int = Field(0, description="Requests the rollout needs before the candidate can pass.")
    passed: bool = Field(True, description="Whether the candidate passed.")
    reason: str | None = Field(None, description="Why it failed; None when it passed.")


class WatchReport(_Record):
    """What the post-promotion watch saw of the new version's live figures, and whether it rolled back."""

    watch_s: float = Field(description="How long the watch ran, seconds.")
    requests: int = Field(description="Requests the new version's model ran on during the watch.")
    errors: int = Field(description="Of those, model errors.")
    error_rate: float = Field(description="errors / requests.")
    p99_ms: float | None = Field(None, description="p99 predict latency during the watch, ms.")
    max_error_rate: float = Field(description="The rollout's error-rate limit.")
    max_p99_ms: float | None = Field(None, description="The rollout's p99 limit (ms); None: none.")
    rolled_back: bool = Field(False, description="Whether it breached a limit and rolled back.")
    reason: str | None = Field(None, description="The breach; None when the version held.")


class SwapReport(_Record):
    """What one swap or rollback did, timed on the board's clock."""

    version: Version = Field(
        description="The version serving when the call ended: the new one, or after a rollback (a failed canary, "
        "a failed ack, the live watch) the one rolled back to. The registry's champion follows this."
    )
    previous: Version | None = Field(description="The version that served before.")
    load_s: float = Field(description="Seconds from the request until every live replica had it loaded.")
    flip_s: float = Field(
        description="Seconds from the flip (right after all-loaded, or after the canary) "
        "until every live replica acknowledged it."
    )
    total_s: float = Field(description="Wall-clock seconds of the whole call.")
    replicas: int = Field(description="Live replicas that took part.")
    canary: CanaryReport | None = Field(None, description="The canary's numbers; None without a canary.")
    rolled_back: bool = Field(
        False, description="True for a rollback, or a swap whose candidate was withdrawn or rolled back."
    )
    candidate: Version | None = Field(None, description="The version the swap tried to bring in.")
    reason: str | None = Field(None, description="Why the candidate was withdrawn or rolled back; None otherwise.")
    watch: WatchReport | None = Field(None, description="The post-promotion watch; None without one.")


class ServiceStatus(_Record):
    """A model service as :meth:`ModelService.status` sees it: Serve's status and the board's snapshot."""

    app: str = Field(description="The Serve application.")
    url: str = Field(description="Its HTTP endpoint.")
    serve_status: str = Field(description="Serve's application status (RUNNING, DEPLOYING, ...) or NOT_DEPLOYED.")
    board: BoardSnapshot | None = Field(None, description="The board's snapshot; None when there is no board.")


class EnsureResult(_Record):
    """What :meth:`ModelService.ensure` did to make serving match the desired model.

    Example:
        >>> EnsureResult(app="m", action="none", desired=ModelRef(version=1, uri="/a/1"), detail="ok").changed
        False
    """

    app: str = Field(description="The Serve application.")
    action: EnsureAction = Field(
        description="none: already serving it, nothing changed; policy: already serving it (or a swap is in "
        "flight, left alone) and only the access policy was updated; deployed: the Serve app was (re)run; "
        "board_recreated: the board was missing and was made again; swapped: a swap brought it in; busy: a swap "
        "of this writer (or a newer one) is in flight, left alone."
    )
    desired: ModelRef = Field(description="The model asked for.")
    report: SwapReport | None = Field(None, description="The swap's report, when ensure swapped.")
    detail: str = Field(description="One line saying what was found and done.")

    @property
    def changed(self) -> bool:
        """Whether ensure changed anything."""
        return self.action not in ("none", "busy")


class StaleFenceError(SwapError, FencedError):
    """A writer (swap, canary, promote, abort, deploy, policy) came with a fence older than one the board has seen.

    The board keeps the highest fence any writer used; a controller that lost its lease holds a lower one, so
    it can no longer move serving. It is a SwapError (the swap did not happen) and a FencedError (the writer
    is a stale leader and should step down).

    Example:
        >>> print(StaleFenceError("sales", 4, 5).headline)
        Board of app sales refused a write with fence 4: it has already seen fence 5 (a newer controller)
    """

    def __init__(self, app: str, fence: int, seen: int) -> None:
        super().__init__(
            f"Board of app {app} refused a write with fence {fence}: it has already seen fence {seen} "
            "(a newer controller)",
            fix="only the controller holding the current lease may swap; this one should step down",
        )
        self.app, self.fence, self.seen = app, fence, seen

    def __reduce__(self) -> tuple[type[StaleFenceError], tuple[str, int, int]]:
        return (type(self), (self.app, self.fence, self.seen))
