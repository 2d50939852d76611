"""Process-wide settings, read from ``STREAMTUNE_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from streamtune.config._format import format_validation_error
from streamtune.config.webhooks import WebhookConfig, parse_webhooks

_PREFIX = "STREAMTUNE_"


class Settings(BaseModel):
    """Where streamtune keeps its state and how it reaches its services.

    Each field can be set by the environment variable ``STREAMTUNE_<FIELD>`` (upper case).

    Example:
        >>> s = Settings(home="/tmp/st")
        >>> s.registry_url
        'sqlite:////tmp/st/registry.db'
    """

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(Path(".streamtune"), description="Folder for the registry DB, artifacts, logs and pids.")
    kafka_bootstrap: str | None = Field(
        None, description="host:port of an existing Kafka cluster. When unset, a local broker is started."
    )
    kafka_port: int = Field(19092, ge=1024, le=65535, description="Port of the local broker's client listener.")
    kafka_heap: str = Field("512m", pattern=r"^\d+[mMgG]$", description="Max JVM heap of the local broker.")
    kafka_version: str = Field("4.1.1", description="Apache Kafka version the local broker is fetched at.")
    ray_address: str | None = Field(
        None, description="Address of an existing Ray cluster. When unset, a local head node is started."
    )
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs the local Ray head offers; all when unset.")
    ray_port: int = Field(6389, ge=1024, le=65535, description="GCS port of the local Ray head.")
    dashboard_port: int = Field(8265, ge=1024, le=65535, description="Ray dashboard / Jobs API port.")
    serve_port: int = Field(8000, ge=1024, le=65535, description="HTTP port of Ray Serve's proxy.")
    registry_url: str = Field(
        "", description="sqlite:////abs/path or postgresql://user:password@host/db (default: <home>/registry.db)."
    )
    artifact_root: str = Field(
        "", description="Artifact store: a folder or an s3:// (gs://) URI for requests, results, models, inline "
        "event files and job code (default: <home>/artifacts)."
    )
    s3_endpoint: str | None = Field(
        None, description="Endpoint of an S3-compatible store, e.g. http://minio:9000; exported as AWS_ENDPOINT_URL."
    )
    events_topic: str = Field("streamtune.data", description="Default topic for data-arrival events.")
    dead_letter_topic: str = Field(
        "streamtune.data.dlq", description="Topic that bad events are copied to, with the reason in a header."
    )
    consumer_group: str = Field("streamtune-controller", description="Kafka consumer group of the controller.")
    serve_host: str = Field("127.0.0.1", description="Host Ray Serve's HTTP proxy binds to and clients call.")
    lease_ttl: float = Field(
        10.0, ge=1.0, le=600.0,
        description="Seconds a controller's lease lasts without renewal; a standby takes over once it lapses.",
    )
    poll_interval: float = Field(
        0.5, gt=0, le=10.0, description="Seconds the controller waits for events in one turn of its loop."
    )
    reconcile_interval: float = Field(
        5.0, gt=0, le=600.0, description="Seconds between checks that serving matches the registry's champions."
    )
    command_timeout: float = Field(
        300.0, gt=0, description="Seconds the SDK waits for the controller to carry out a command."
    )
    submit_checks: bool = Field(
        True, description="Check each submitted spec against its job (module, class, metric, params) in a "
        "short-lived Ray task; off only for a controller with no Ray to reach (ingest-only tests and benchmarks)."
    )
    api_host: str = Field("127.0.0.1", description="Host the HTTP control API binds to on every controller.")
    api_port: int = Field(8470, ge=1024, le=65535, description="Port of the HTTP control API.")
    auth: Literal["token", "none"] = Field(
        "token",
        description="'token': the API and the model endpoints require a bearer token (streamtune token create). "
        "'none' (local mode only): no token, and the API listens on 127.0.0.1 only.",
    )
    url: str | None = Field(None, description="URL of a running platform's API; the SDK and CLI talk to it.")
    token: SecretStr | None = Field(None, description="Bearer token for the API at `url` (a secret).")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body the API accepts.")
    max_rows: int = Field(10_000, ge=1, description="Most rows one predict or publish request may carry.")
    webhooks: list[WebhookConfig] = Field(
        default_factory=list, description="Where the controller POSTs signed platform events: a JSON list of "
        '{"url", "secret_env" (or "secret"), "events"} (streamtune.config.webhooks.WebhookConfig).',
    )

    _webhooks_json = field_validator("webhooks", mode="before")(parse_webhooks)

    def model_post_init(self, __context: Any) -> None:
        self.home = self.home.expanduser().resolve()
        if not self.registry_url:
            self.registry_url = f"sqlite:///{self.home / 'registry.db'}"
        if not self.artifact_root:
            self.artifact_root = str(self.home / "artifacts")

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read settings from ``STREAMTUNE_*`` variables; keyword overrides win.

        Raises:
            ConfigError: naming the variable, its value and the rule.

        Example:
            >>> Settings.from_env(home="/tmp/st").serve_port
            8000
        """
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = os.environ.get(_PREFIX + name.upper())
            if raw not in (None, ""):
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise format_validation_error(exc, source="settings", rename=lambda f: _PREFIX + f.upper()) from None

    @property
    def log_dir(self) -> Path:
        """Folder for service logs."""
        return self.home / "logs"

    @property
    def bootstrap(self) -> str:
        """``host:port`` of Kafka: ``kafka_bootstrap``, or the local broker on ``kafka_port``.

        Example:
            >>> Settings(home="/tmp/st", kafka_port=19500).bootstrap
            '127.0.0.1:19500'
        """
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def ray_join_address(self) -> str:
        """Address to join Ray at: ``ray_address``, or the local head on ``ray_port``.

        Example:
            >>> Settings(home="/tmp/st").ray_join_address
            '127.0.0.1:6389'
        """
        return self.ray_address or f"127.0.0.1:{self.ray_port}"

    @property
    def jobs_url(self) -> str:
        """URL of the Ray Jobs API (the dashboard) of the cluster streamtune uses.

        Example:
            >>> Settings(home="/tmp/st", ray_address="ray://10.0.0.5:10001").jobs_url
            'http://10.0.0.5:8265'
        """
        address = self.ray_address
        if address and address.startswith("http"):
            return address
        host = address.removeprefix("ray://").rsplit(":", 1)[0] if address and address != "auto" else "127.0.0.1"
        return f"http://{host}:{self.dashboard_port}"

    @property
    def api_url(self) -> str:
        """Where the SDK and CLI find the API: ``url``, or this machine's controller on ``api_port``.

        Example:
            >>> Settings(home="/tmp/st", api_host="0.0.0.0").api_url
            'http://127.0.0.1:8470'
        """
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        return f"http://{host}:{self.api_port}"

    @property
    def token_file(self) -> Path:
        """Where ``streamtune up`` keeps the operator's API token for the CLI on this machine (mode 0600)."""
        return self.home / "api_token"

    def serve_url(self, app: str) -> str:
        """HTTP endpoint of a Serve app.

        Example:
            >>> Settings(home="/tmp/st").serve_url("sales")
            'http://127.0.0.1:8000/sales'
        """
        return f"http://{self.serve_host}:{self.serve_port}/{app}"
