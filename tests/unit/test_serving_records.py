"""The serving records: pure pydantic, importable without Ray, and safe to ship between processes."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import subprocess
import sys

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from streamtune.errors import SwapError
from streamtune.serving import records
from streamtune.serving.records import (
    AccessPolicy,
    BoardSnapshot,
    BoardView,
    CanaryReport,
    EnsureResult,
    LoadFailure,
    ModelRef,
    ReplicaReport,
    ReplicaStatus,
    RequestCounts,
    StaleFenceError,
    SwapRecord,
    SwapReport,
)

V1 = ModelRef(version=1, uri="/a/1")
V2 = ModelRef(version=2, uri="/a/2")


def test_records_and_the_serving_package_import_without_ray() -> None:
    code = (
        "import sys; import streamtune.serving.records; import streamtune.serving as s; s.ModelRef; "
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_field_is_described() -> None:
    kinds = [
        AccessPolicy, BoardSnapshot, BoardView, CanaryReport, EnsureResult, LoadFailure, ModelRef, ReplicaReport,
        ReplicaStatus, RequestCounts, SwapRecord, SwapReport,
    ]
    missing = [f"{r.__name__}.{n}" for r in kinds for n, f in r.model_fields.items() if not f.description]
    assert missing == []


def test_model_ref_is_frozen_and_keeps_int_and_str_versions_apart() -> None:
    with pytest.raises(ValidationError):
        V1.version = 3  # type: ignore[misc]
    assert ModelRef(version="1", uri="/a/1") != V1
    assert {V1, ModelRef(version=1, uri="/a/1")} == {V1}
    assert ModelRef.model_validate_json(V1.model_dump_json()) == V1
    with pytest.raises(ValidationError):
        ModelRef(version=1, uri="/a/1", extra="no")  # type: ignore[call-arg]


def test_view_wants_active_previous_and_target_once() -> None:
    view = BoardView(board_id="b", epoch=3, generation=2, active=V2, previous=V1, target=V2)
    assert view.wanted() == [V2, V1]
    assert BoardView(board_id="b", epoch=0, generation=0).wanted() == []


def test_replica_holds_only_the_same_version_and_uri() -> None:
    report = ReplicaReport(board_id="b", applied_epoch=1, loaded={1: "/a/1", "x": "/a/x"})
    assert report.holds(V1)
    assert not report.holds(ModelRef(version=1, uri="/elsewhere/1"))
    assert not report.holds(V2)
    assert report.holds(ModelRef(version="x", uri="/a/x"))


def test_request_counts_add_subtract_and_rate() -> None:
    total = RequestCounts(requests=10, errors=1) + RequestCounts(requests=30, errors=3)
    assert total == RequestCounts(requests=40, errors=4) and total.error_rate == 0.1
    assert (RequestCounts(requests=5, errors=1) - total) == RequestCounts()  # never negative
    with pytest.raises(ValidationError):
        RequestCounts(requests=-1, errors=0)


def _status(active: int | None, live: bool = True) -> ReplicaStatus:
    return ReplicaStatus(live=live, seen_s_ago=0.1, applied_epoch=3, active=active)


def test_snapshot_serving_needs_the_board_and_every_live_replica_on_it() -> None:
    def snap(active: ModelRef | None, replicas: dict[str, ReplicaStatus]) -> BoardSnapshot:
        live = sorted(r for r, s in replicas.items() if s.live)
        return BoardSnapshot(app="m", board_id="b", epoch=3, generation=1, active=active,
                             live_replicas=live, replicas=replicas)

    assert snap(V1, {"a": _status(1), "b": _status(1)}).serving(V1, 2)
    assert not snap(V1, {"a": _status(1), "b": _status(None)}).serving(V1, 2)  # b has not flipped yet
    assert not snap(V1, {"a": _status(1)}).serving(V1, 2)  # one replica short
    assert snap(V1, {"a": _status(1), "b": _status(1), "dead": _status(None, live=False)}).serving(V1, 2)
    assert not snap(V2, {"a": _status(1), "b": _status(1)}).serving(V1, 2)  # the board wants another
    assert [s.active for s in snap(V1, {"a": _status(1), "d": _status(9, live=False)}).live()] == [1]


def test_swap_report_round_trips_through_json_with_its_canary() -> None:
    canary = CanaryReport(percent=10, observe_s=5, requests=40, errors=0, error_rate=0.0, max_error_rate=0.01)
    report = SwapReport(version=2, previous=1, load_s=1.2, flip_s=0.01, total_s=7.0, replicas=2, canary=canary)
    assert SwapReport.model_validate_json(report.model_dump_json()) == report
    assert SwapReport.model_validate(report.model_dump()).canary == canary


def test_swap_record_is_updated_in_place_and_names_its_model() -> None:
    record = SwapRecord(generation=4, kind="ensure", version=2, uri="/a/2", started=10.0)
    record.loaded_at = 11.0
    assert record.ref == V2 and record.loaded_at == 11.0 and record.failure is None
    with pytest.raises(ValidationError):
        SwapRecord(generation=4, kind="teleport", version=2, uri="/a/2", started=1.0)


def test_ensure_result_actions() -> None:
    assert EnsureResult(app="m", action="swapped", desired=V1, detail="").changed
    assert EnsureResult(app="m", action="policy", desired=V1, detail="").changed
    assert not EnsureResult(app="m", action="none", desired=V1, detail="").changed
    assert not EnsureResult(app="m", action="busy", desired=V1, detail="").changed
    with pytest.raises(ValidationError):
        EnsureResult(app="m", action="rebooted", desired=V1, detail="")


def test_stale_fence_error_names_both_tokens_and_survives_pickling() -> None:
    err = StaleFenceError("sales", 4, 5)
    assert isinstance(err, SwapError)
    assert "fence 4" in err.headline and "fence 5" in err.headline
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.app, copy.fence, copy.seen, copy.headline, copy.fix) == ("sales", 4, 5, err.headline, err.fix)


def test_hub_caches_one_service_per_spec_and_passes_its_fence_without_touching_ray() -> None:
    from streamtune.config.jobspec import JobSpec
    from streamtune.serving.hub import ServeHub

    spec = JobSpec.model_validate({
        "name": "sales",
        "dataset": {"name": "d", "label": "y"},
        "job": {"entrypoint": "jobs.x:Job", "code": "/code", "code_uri": "/store/code/0123.zip"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"lr": {"type": "uniform", "low": 0.1, "high": 0.2}}},
        "serve": {"app": "sales", "replicas": 1},
    })
    connects: list[int] = []
    hub = ServeHub(8123, connect=lambda: connects.append(1))
    hub.fence = 4
    svc = hub.service(spec)
    assert hub.service(spec) is svc and svc.fence == 4 and svc.url == "http://127.0.0.1:8123/sales"
    hub.fence = 5
    assert svc.fence == 5
    bigger = spec.model_copy(update={"serve": spec.serve.model_copy(update={"replicas": 3})})
    other = hub.service(bigger)
    assert other is not svc and other.spec.replicas == 3 and other.fence == 5
    assert connects == []


GOOD = hashlib.sha256(b"good").hexdigest()
OTHER = hashlib.sha256(b"other").hexdigest()


def test_access_policy_defaults_let_everything_through() -> None:
    policy = AccessPolicy()
    assert (policy.required, policy.token_sha256) == (False, ())
    assert (policy.max_body_bytes, policy.max_rows) == (10 * 1024 * 1024, 10_000)
    assert all(policy.allows(h) for h in (None, "", "Bearer nope", "garbage"))
    assert BoardView(board_id="b", epoch=0, generation=0).policy == policy
    assert BoardSnapshot(app="m", board_id="b", epoch=0, generation=0).policy == policy


def test_access_policy_accepts_only_bearer_tokens_whose_hash_it_holds() -> None:
    policy = AccessPolicy(required=True, token_sha256=(GOOD,))
    assert AccessPolicy.hash_token("good") == GOOD
    for header in ("Bearer good", "bearer good", "BEARER good", "  Bearer   good  "):
        assert policy.allows(header), header
    for header in (None, "", "Bearer", "Bearer ", "good", "Basic good", "Bearer bad", "Bearer good extra",
                   "Bearer Good", f"Bearer {GOOD}", "Token good"):
        assert not policy.allows(header), header


def test_access_policy_required_without_hashes_lets_nothing_through() -> None:
    policy = AccessPolicy(required=True)
    assert not any(policy.allows(h) for h in (None, "Bearer good", "Bearer "))


def test_access_policy_with_several_tokens_and_a_revocation() -> None:
    both = AccessPolicy(required=True, token_sha256=(GOOD, OTHER))
    assert both.allows("Bearer good") and both.allows("Bearer other")
    revoked = both.model_copy(update={"token_sha256": (OTHER,)})
    assert not revoked.allows("Bearer good") and revoked.allows("Bearer other")
    assert revoked != both


def test_access_policy_compares_every_hash_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = records.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(records.hmac, "compare_digest", spy)
    policy = AccessPolicy(required=True, token_sha256=(GOOD, OTHER, "0" * 64))
    assert policy.allows("Bearer good")  # matches the first, still compares all three
    assert [b for _, b in calls] == [GOOD, OTHER, "0" * 64]
    assert {a for a, _ in calls} == {GOOD}


def test_access_policy_validates_and_normalizes_its_hashes() -> None:
    upper = AccessPolicy(required=True, token_sha256=(GOOD.upper(), f" {GOOD} "))
    assert upper.token_sha256 == (GOOD,) and upper.allows("Bearer good")
    for bad in ("good", GOOD[:-1], GOOD[:-1] + "g", GOOD + "0"):
        with pytest.raises(ValidationError, match="64 hex digits"):
            AccessPolicy(token_sha256=(bad,))
    with pytest.raises(ValidationError):
        AccessPolicy(max_body_bytes=0)
    with pytest.raises(ValidationError):
        AccessPolicy(max_rows=0)
    with pytest.raises(ValidationError):
        AccessPolicy(token="good")  # type: ignore[call-arg]


def test_access_policy_is_frozen_and_travels_in_views() -> None:
    policy = AccessPolicy(required=True, token_sha256=(GOOD,), max_body_bytes=2048, max_rows=5)
    with pytest.raises(ValidationError):
        policy.required = False  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(policy)) == policy
    view = BoardView(board_id="b", epoch=1, generation=0, policy=policy)
    again = BoardView.model_validate_json(view.model_dump_json())
    assert again == view and again.policy.allows("Bearer good") and not again.policy.allows(None)
    assert "good" not in view.model_dump_json()  # only the hash travels, never the token


def _request(body: bytes, *, declared: int | None, chunk: int = 1000) -> Request:
    """A real starlette Request whose body arrives in ``chunk``-byte messages."""
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    messages = [
        {"type": "http.request", "body": body[i:i + chunk], "more_body": i + chunk < len(body)}
        for i in range(0, max(len(body), 1), chunk)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def test_replica_body_limit_refuses_a_declared_or_streamed_body_over_it() -> None:
    from streamtune.serving.deployment import _read_body, _Refused

    assert asyncio.run(_read_body(_request(b"x" * 2048, declared=2048), 2048)) == b"x" * 2048
    with pytest.raises(_Refused) as declared:
        asyncio.run(_read_body(_request(b"x" * 3000, declared=3000), 2048))
    assert (declared.value.status, declared.value.message) == (
        413, "request body is 3000 bytes; the limit is 2048 bytes"
    )
    with pytest.raises(_Refused) as streamed:  # no Content-Length (chunked): read only up to the limit
        asyncio.run(_read_body(_request(b"x" * 10_000, declared=None), 2048))
    assert streamed.value.status == 413 and "at least 3000 bytes; the limit is 2048" in streamed.value.message


def test_replica_row_limit_and_bad_bodies() -> None:
    from streamtune.serving.deployment import _parse_rows, _Refused

    assert _parse_rows(b'{"rows": [{"x": 1}, {"x": 2}]}', max_rows=2).num_rows == 2
    with pytest.raises(_Refused) as over:
        _parse_rows(b'{"rows": [{"x": 1}, {"x": 2}, {"x": 3}]}', max_rows=2)
    assert over.value.status == 422 and "3 rows" in over.value.message and "limit is 2" in over.value.message
    for body in (b"nope", b'{"data": []}', b'{"rows": []}', b'{"rows": [1]}'):
        with pytest.raises(_Refused) as bad:
            _parse_rows(body, max_rows=2)
        assert bad.value.status == 400


def test_hub_keeps_its_policy_for_every_service_before_it_needs_ray() -> None:
    from streamtune.config.jobspec import JobSpec
    from streamtune.serving.hub import ServeHub

    spec = JobSpec.model_validate({
        "name": "sales",
        "dataset": {"name": "d", "label": "y"},
        "job": {"entrypoint": "jobs.x:Job", "code": "/code", "code_uri": "/store/code/0123.zip"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"lr": {"type": "uniform", "low": 0.1, "high": 0.2}}},
        "serve": {"app": "sales", "replicas": 1},
    })
    connects: list[int] = []
    hub = ServeHub(8123, connect=lambda: connects.append(1))
    assert hub.policy == AccessPolicy() and hub.service(spec).policy == AccessPolicy()
    closed = AccessPolicy(required=True, token_sha256=(GOOD,))
    assert hub.set_policy(closed) == []  # no Ray yet: kept, brought to each board by its first ensure/swap
    assert hub.policy == closed and hub.service(spec).policy == closed
    bigger = spec.model_copy(update={"serve": spec.serve.model_copy(update={"replicas": 3})})
    assert hub.service(bigger).policy == closed
    assert ServeHub(8123, connect=lambda: None, policy=closed).service(spec).policy == closed
    assert connects == []
