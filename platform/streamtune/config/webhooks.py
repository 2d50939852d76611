"""Webhook settings (``STREAMTUNE_WEBHOOKS``): where the controller POSTs platform events, signed with a secret.

``STREAMTUNE_WEBHOOKS`` is a JSON list of :class:`WebhookConfig` objects. Give each a ``secret_env`` (the name of
a variable that holds the secret, e.g. from a Kubernetes Secret) or, for local use, the ``secret`` itself; it is
a :class:`~pydantic.SecretStr`, so it never shows in reprs, logs or dumps, and the URL is never logged either (a
Slack-style URL carries a secret in its path): logs and metrics name the webhook by ``name``.

Example:
    >>> raw = parse_webhooks('[{"url": "https://hooks.example.com/st", "secret_env": "HOOK_SECRET", '
    ...                      '"events": ["promoted", "rolled_back"]}]')
    >>> hooks = [WebhookConfig.model_validate(h) for h in raw]
    >>> hooks[0].label, hooks[0].events, hooks[0].max_attempts
    ('hooks.example.com', ['promoted', 'rolled_back'], 5)
    >>> hooks[0].secret_bytes({"HOOK_SECRET": "s3cret"})
    b's3cret'
    >>> WebhookConfig(url="http://127.0.0.1:9/x", secret="s3cret")
    WebhookConfig(url='http://127.0.0.1:9/x', name=None, secret=SecretStr('**********'), secret_env=None, ...)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from streamtune.errors import ConfigError

__all__ = ["DEFAULT_WEBHOOK_EVENTS", "WebhookConfig", "WebhookEvent", "parse_webhooks"]

WebhookEvent = Literal["run_finished", "gate_rejected", "gate_passed", "promoted", "rolled_back", "drift_detected"]
"""Event names a webhook can ask for (``GateVerdict`` is ``gate_passed`` or ``gate_rejected``)."""

DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = (
    "run_finished", "gate_rejected", "promoted", "rolled_back", "drift_detected")
"""What a webhook gets when it names no ``events``."""


class WebhookConfig(BaseModel):
    """One webhook: the URL, its signing secret, which events, and how hard to try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Where events are POSTed (http:// or https://).")
    name: str | None = Field(None, max_length=100,
                             description="Name in logs and metrics (default: the URL's host); the URL never is.")
    secret: SecretStr | None = Field(None, description="The HMAC-SHA256 signing secret (prefer secret_env).")
    secret_env: str | None = Field(None, description="Name of the environment variable that holds the secret.")
    events: list[WebhookEvent] = Field(default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS),
                                       description="Event names to send; the others are not.")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Seconds one attempt waits for the receiver.")
    max_attempts: int = Field(5, ge=1, le=20, description="Attempts per event before it is given up (recorded).")
    backoff_s: float = Field(1.0, gt=0, le=600, description="Wait before the 2nd attempt; doubles after each.")
    backoff_max_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between two attempts.")
    queue_size: int = Field(1000, ge=1, le=100_000,
                            description="Events waiting for delivery at most; past it new ones are dropped.")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret_env (preferred) or secret")
        return self

    @property
    def label(self) -> str:
        """The name logs and metrics use: ``name``, else the URL's host (and port)."""
        return self.name or str(urlsplit(self.url).netloc.rpartition("@")[2])

    def secret_bytes(self, environ: Mapping[str, str] | None = None) -> bytes:
        """The signing secret: ``secret``, or the value of the variable ``secret_env`` names.

        Raises:
            ConfigError: that variable is unset or empty.
        """
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        value = (os.environ if environ is None else environ).get(str(self.secret_env), "")
        if not value:
            raise ConfigError(f'Got "{self.secret_env}" for secret_env of webhook {self.label}; that environment '
                              "variable is not set", fix="set it to the webhook's signing secret")
        return value.encode()


def parse_webhooks(value: Any) -> Any:
    """``STREAMTUNE_WEBHOOKS`` as Settings reads it: a JSON string is decoded; pydantic validates the rest.

    Raises:
        ValueError: the string is not JSON (pydantic reports it against the setting).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a JSON list of webhooks: {exc.msg} at character {exc.pos}") from None
    return value
