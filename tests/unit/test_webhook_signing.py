"""Webhook signatures, the retry schedule and the settings, whose secrets never show."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from streamtune.config.settings import Settings
from streamtune.config.webhooks import WebhookConfig
from streamtune.errors import ConfigError
from streamtune.observe.bus import EventBus
from streamtune.observe.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookListener,
    backoff_delays,
    sign,
    verify_signature,
)

BODY = b'{"kind":"promoted","spec":"sales","version":2}'


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    headers = sign(BODY, "k3y", timestamp=1_700_000_123)
    expected = hmac.new(b"k3y", b"1700000123." + BODY, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1700000123", SIGNATURE_HEADER: f"sha256={expected}"}


@pytest.mark.parametrize("change", ["body", "timestamp", "secret", "scheme", "missing", "late", "early"])
def test_verification_refuses_anything_changed_stale_or_missing(change):
    headers = sign(BODY, "k3y", timestamp=1_700_000_000)
    body, secret, now = BODY, "k3y", 1_700_000_060.0
    if change == "body":
        body = BODY.replace(b"2", b"3")
    elif change == "timestamp":  # a replay with a fresh timestamp but the old signature
        headers[TIMESTAMP_HEADER] = "1700000050"
    elif change == "secret":
        secret = "other"
    elif change == "scheme":
        headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].replace("sha256=", "sha1=")
    elif change == "missing":
        del headers[TIMESTAMP_HEADER]
    elif change == "late":
        now = 1_700_000_000 + 301
    elif change == "early":
        now = 1_700_000_000 - 301
    assert verify_signature(BODY, sign(BODY, "k3y", timestamp=1_700_000_000), "k3y", now=1_700_000_060.0)
    assert not verify_signature(body, headers, secret, now=now)


def test_headers_are_matched_in_any_case_and_bytes_secrets_work():
    headers = {k.upper(): v for k, v in sign(BODY, b"k3y", timestamp=100).items()}
    assert verify_signature(BODY, headers, b"k3y", now=100)


def test_backoff_doubles_up_to_its_cap_for_each_retry():
    assert backoff_delays(5, 0.5, 3.0) == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delays(3, 2.0, 100.0) == [2.0, 4.0]
    assert backoff_delays(1, 1.0, 1.0) == []


def test_webhooks_come_from_one_json_setting_with_secrets_in_other_variables(monkeypatch):
    monkeypatch.setenv("STREAMTUNE_WEBHOOKS", json.dumps([
        {"url": "https://hooks.example.com/services/T0/B0/XYZSECRETPATH", "secret_env": "ST_HOOK_KEY",
         "events": ["gate_rejected", "promoted"], "name": "slack"},
        {"url": "http://127.0.0.1:9/hook", "secret": "inline-s3cret"},
    ]))
    monkeypatch.setenv("ST_HOOK_KEY", "from-env-s3cret")
    settings = Settings.from_env(home="/tmp/st-hooks")
    slack, local = settings.webhooks
    assert (slack.label, slack.events, local.label) == ("slack", ["gate_rejected", "promoted"], "127.0.0.1:9")
    assert slack.secret_bytes() == b"from-env-s3cret" and local.secret_bytes() == b"inline-s3cret"
    shown = repr(settings) + settings.model_dump_json() + str(settings.model_dump())
    assert "inline-s3cret" not in shown and "from-env-s3cret" not in shown
    bus = EventBus.from_settings(settings)
    try:
        assert [s.name for s in bus.stats()] == ["slack", "127.0.0.1:9"]
        assert "XYZSECRETPATH" not in repr(bus.listeners[1]) and "s3cret" not in repr(bus.listeners[1])
    finally:
        bus.close(0.5)


def test_a_missing_secret_or_a_bad_setting_is_a_config_error_that_repeats_no_secret(monkeypatch):
    with pytest.raises(ConfigError, match="ST_NOT_SET"):
        WebhookListener(WebhookConfig(url="http://127.0.0.1:9/h", secret_env="ST_NOT_SET"), environ={})
    for bad in ('[{"url": "ftp://x/SECRETPATH", "secret": "s3cret-value"}]',
                '[{"url": "http://x/SECRETPATH", "secret": "s3cret-value", "secret_env": "X"}]',
                '[{"url": "http://x/SECRETPATH", "secret": "s3cret-value"',
                '[{"url": "http://x/SECRETPATH", "secret": "s3cret-value", "events": ["nope"]}]'):
        monkeypatch.setenv("STREAMTUNE_WEBHOOKS", bad)
        with pytest.raises(ConfigError) as info:
            Settings.from_env(home="/tmp/st-hooks")
        assert "STREAMTUNE_WEBHOOKS" in str(info.value)
        assert "s3cret-value" not in str(info.value) and "SECRETPATH" not in str(info.value)


def test_a_webhook_only_queues_the_events_it_asked_for():
    from conformance.listener_suite import every_kind

    hook = WebhookListener(WebhookConfig(url="http://127.0.0.1:9/h", secret="k", events=["gate_rejected"],
                                         backoff_s=60))
    try:
        assert [e.name for e in every_kind() if hook.wants(e)] == ["gate_rejected"]
    finally:
        hook.close(0.2)
