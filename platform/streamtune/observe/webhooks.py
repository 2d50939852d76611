"""Webhooks: POST platform events as JSON to configured URLs, signed with HMAC-SHA256, retried with backoff.

Each configured webhook (:class:`~streamtune.config.webhooks.WebhookConfig`, ``STREAMTUNE_WEBHOOKS``) is one
:class:`WebhookListener`: a bounded queue and a worker thread of its own, so a receiver that hangs or fails
delays only its own deliveries, never the controller's loop nor the other webhooks.

**What a request carries.** The body is the event's JSON (:mod:`streamtune.observe.events`; read it back with
:func:`~streamtune.observe.events.parse_event`). Headers:

- ``X-Streamtune-Event``: the event name (``run_finished``, ``gate_rejected``, ``promoted``, ...);
- ``X-Streamtune-Delivery``: the event's id, the same on every attempt (dedupe on it);
- ``X-Streamtune-Attempt``: 1, 2, ...;
- ``X-Streamtune-Timestamp``: Unix seconds (an integer) when this attempt was signed;
- ``X-Streamtune-Signature``: ``sha256=<hex>``, the HMAC-SHA256 with the webhook's secret over exactly the bytes
  ``<timestamp> + "." + <raw body>``. The timestamp is inside the signed bytes, so a captured request cannot be
  replayed later: :func:`verify_signature` refuses one older (or newer) than its tolerance (5 min).

**Retries.** A connection error, a timeout (``timeout_s``), a 5xx, 408, 425 or 429 is tried again after
``backoff_s``, doubling up to ``backoff_max_s`` (:func:`backoff_delays`), up to ``max_attempts`` in all; any other
4xx is final. The event is then given up and counted, with the reason as the listener's ``last_error``
(exported as metrics). Each attempt is signed anew. Neither the URL nor the secret is ever logged: a Slack-style
URL carries a secret in its path; logs and metrics use the webhook's ``name``.

Example:
    >>> body = b'{"kind": "promoted"}'
    >>> headers = sign(body, b"s3cret", timestamp=1700000000)
    >>> headers["X-Streamtune-Timestamp"]
    '1700000000'
    >>> signed = b"1700000000." + body   # exactly what is signed: timestamp, a dot, the raw body
    >>> headers["X-Streamtune-Signature"] == "sha256=" + hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
    True
    >>> verify_signature(body, headers, "s3cret", now=1700000100)
    True
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping

import requests

from streamtune.config.webhooks import WebhookConfig
from streamtune.errors import ServiceError
from streamtune.observe.events import PlatformEvent
from streamtune.observe.listener import QueuedListener

__all__ = [
    "DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookFailed", "WebhookListener",
    "backoff_delays", "sign", "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Streamtune-Signature"
TIMESTAMP_HEADER = "X-Streamtune-Timestamp"
EVENT_HEADER = "X-Streamtune-Event"
DELIVERY_HEADER = "X-Streamtune-Delivery"
ATTEMPT_HEADER = "X-Streamtune-Attempt"
TOLERANCE_S = 300
"""How far a request's timestamp may be from the receiver's clock before :func:`verify_signature` refuses it."""
_RETRY_STATUSES = frozenset({408, 425, 429})


class WebhookFailed(ServiceError):
    """A webhook delivery was given up (its reason names neither the URL nor the secret)."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(body: bytes, secret: str | bytes, timestamp: int | str) -> str:
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The timestamp and signature headers for ``body``: HMAC-SHA256 over ``<timestamp>.<body>``.

    Example:
        >>> sorted(sign(b"{}", "k", timestamp=1))
        ['X-Streamtune-Signature', 'X-Streamtune-Timestamp']
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: "sha256=" + _digest(body, secret, ts)}


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str | bytes, *,
                     tolerance_s: float = TOLERANCE_S, now: float | None = None) -> bool:
    """For receivers: True if ``headers`` sign exactly ``body`` with ``secret`` within ``tolerance_s`` of now.

    Pass the raw request body (before any JSON parsing) and its headers (any case). Compares in constant time.

    Example:
        >>> body = b'{"kind":"run_finished","spec":"sales"}'
        >>> headers = {k.lower(): v for k, v in sign(body, "s3cret", timestamp=1700000000).items()}
        >>> verify_signature(body, headers, "s3cret", now=1700000010)
        True
        >>> verify_signature(body + b" ", headers, "s3cret", now=1700000010)   # body changed
        False
        >>> verify_signature(body, headers, "other", now=1700000010)           # wrong secret
        False
        >>> verify_signature(body, headers, "s3cret", now=1700000000 + 3600)   # replayed an hour later
        False
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp, signature = lowered.get(TIMESTAMP_HEADER.lower()), lowered.get(SIGNATURE_HEADER.lower(), "")
    if stamp is None or not stamp.strip().isdigit() or not signature.startswith("sha256="):
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature.removeprefix("sha256="), _digest(body, secret, stamp.strip()))


def backoff_delays(max_attempts: int, first_s: float, max_s: float) -> list[float]:
    """Seconds to wait before each retry (attempt 2, 3, ...): ``first_s`` doubling, capped at ``max_s``.

    Example:
        >>> backoff_delays(6, 1.0, 10.0)
        [1.0, 2.0, 4.0, 8.0, 10.0]
        >>> backoff_delays(1, 1.0, 10.0)
        []
    """
    return [min(max_s, first_s * 2 ** i) for i in range(max(0, max_attempts - 1))]


class WebhookListener(QueuedListener):
    """POSTs the events a webhook asks for to its URL, signed, from a worker thread; see the module docs.

    Args:
        config: The webhook.
        name: Its name in logs and metrics (default: ``config.label``).
        environ: Where ``config.secret_env`` is looked up (default: ``os.environ``).

    Raises:
        ConfigError: ``config.secret_env`` names a variable that is not set.

    Example:
        >>> hook = WebhookListener(WebhookConfig(url="http://127.0.0.1:9/hook", secret="k", events=["promoted"]))
        >>> from streamtune.observe.events import RunFinished
        >>> hook.wants(RunFinished(spec="s", run_id="r", status="failed", succeeded=False, seconds=1.0))
        False
        >>> hook.close(0.1)
    """

    def __init__(self, config: WebhookConfig, *, name: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._secret = config.secret_bytes(environ)
        self._events = frozenset(config.events)
        self._delays = backoff_delays(config.max_attempts, config.backoff_s, config.backoff_max_s)
        self._http = requests.Session()
        super().__init__(name or config.label, queue_size=config.queue_size)

    def __repr__(self) -> str:  # never the URL or the secret
        return f"WebhookListener(name={self.name!r}, events={sorted(self._events)})"

    def wants(self, event: PlatformEvent) -> bool:
        return event.name in self._events

    def process(self, event: PlatformEvent) -> None:
        body = event.model_dump_json().encode()
        for attempt in range(1, self.config.max_attempts + 1):
            reason, retry = self._attempt(event, body, attempt)
            if reason is None:
                return
            if not retry or attempt == self.config.max_attempts:
                raise WebhookFailed(f"webhook {self.name}: {event.name} event {event.event_id} given up after "
                                    f"attempt {attempt}: {reason}")
            self.failed(f"attempt {attempt}: {reason}")
            delay = self._delays[attempt - 1]
            log.info("webhook %s: %s event attempt %d failed (%s); next in %gs", self.name, event.name, attempt,
                     reason, delay)
            if self.stopping(delay):
                raise WebhookFailed(f"webhook {self.name}: {event.name} event {event.event_id} dropped at shutdown "
                                    f"after attempt {attempt}: {reason}")

    def _attempt(self, event: PlatformEvent, body: bytes, attempt: int) -> tuple[str | None, bool]:
        """One POST: (None, _) when delivered, else (reason, whether to retry)."""
        headers = {"Content-Type": "application/json", "User-Agent": "streamtune-webhooks",
                   EVENT_HEADER: event.name, DELIVERY_HEADER: event.event_id, ATTEMPT_HEADER: str(attempt),
                   **sign(body, self._secret)}
        try:
            response = self._http.post(self.config.url, data=body, headers=headers, timeout=self.config.timeout_s,
                                       allow_redirects=False)
        except requests.Timeout:
            return f"no answer within {self.config.timeout_s:g} s", True
        except requests.ConnectionError:
            return "could not connect", True
        except requests.RequestException as exc:  # its message names the URL: say only what kind it was
            return f"request failed ({type(exc).__name__})", True
        response.close()
        status = response.status_code
        if 200 <= status < 300:
            return None, False
        return f"HTTP {status}", status >= 500 or status in _RETRY_STATUSES

    def close(self, timeout_s: float = 5.0) -> None:
        super().close(timeout_s)
        self._http.close()

