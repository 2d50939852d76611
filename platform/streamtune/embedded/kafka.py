"""A local single-node Apache Kafka broker (KRaft) for the demo and the tests.

The broker's jars come from Maven (see ``kafka_pom.xml``, a copy of ``deploy/kafka/pom.xml``) into a cache
folder shared by every streamtune home, and the broker runs as a detached ``java`` process whose pid is kept
under ``<home>/kafka``. A later :meth:`LocalKafka.start` with the same home reuses a broker that is still up.

Example:
    >>> from streamtune.config.settings import Settings
    >>> with LocalKafka(Settings(home="/tmp/st")) as kafka:  # doctest: +SKIP
    ...     print(kafka.bootstrap)
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from streamtune.config.settings import Settings
from streamtune.embedded.kafka_jars import OR_EXTERNAL, _require_java, fetch_jars
from streamtune.embedded.kafka_jars import tail as _tail
from streamtune.errors import ServiceError
from streamtune.runtime.kafka import answers as _answers

log = logging.getLogger(__name__)


_QUIET_LOGGERS = (
    "kafka.request.logger",
    "org.apache.kafka.clients",
    "state.change.logger",
    "kafka.log.LogCleaner",
    "org.apache.kafka.common.config.AbstractConfig",  # dumps every config value, three times per start
)
_LOG4J2 = "\n".join(
    [
        "# Written by streamtune: the broker logs to stdout, which streamtune sends to <log_dir>/kafka.log.",
        "status = warn",
        "appender.out.type = Console",
        "appender.out.name = STDOUT",
        "appender.out.layout.type = PatternLayout",
        "appender.out.layout.pattern = [%d] %p %m (%c)%n",
        "rootLogger.level = info",
        "rootLogger.appenderRef.out.ref = STDOUT",
        *(f"logger.q{i}.name = {name}\nlogger.q{i}.level = warn" for i, name in enumerate(_QUIET_LOGGERS)),
        "",
    ]
)
_SERVER_PROPERTIES = """\
# Written by streamtune on each start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
# One partition each: creating 50 offsets partitions slows the first group join on small machines.
offsets.topic.num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
"""


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return _SERVER_PROPERTIES.format(data=data_dir, port=port, cport=controller_port)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _is_broker_process(pid: int) -> bool:
    """True when ``pid`` is alive and, where /proc tells, a ``kafka.Kafka`` JVM (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or someone else's process
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): trust the pid
    try:
        if proc.joinpath("stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
        return b"kafka.Kafka" in proc.joinpath("cmdline").read_bytes()
    except (OSError, IndexError):
        return False


def _new_cluster_id() -> str:
    # Kafka's Uuid: 16 random bytes, URL-safe base64 without padding, never starting with "-".
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class LocalKafka:
    """A single-node KRaft Kafka broker on 127.0.0.1, or a check of an existing cluster.

    State lives under ``settings.home / "kafka"`` (data, ``server.properties``, ``broker.pid``); the broker's
    output goes to ``settings.log_dir / "kafka.log"``. When ``settings.kafka_bootstrap`` is set nothing is
    started: :meth:`start` only checks that the cluster answers.

    Args:
        settings: Home, port (the controller listens on port + 1), heap and Kafka version.

    Example:
        >>> kafka = LocalKafka(Settings(home="/tmp/st", kafka_port=19092))
        >>> kafka.bootstrap
        '127.0.0.1:19092'
        >>> kafka.start()  # doctest: +SKIP
        '127.0.0.1:19092'
        >>> kafka.stop()  # doctest: +SKIP
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home / "kafka"
        self.pid_file = self.dir / "broker.pid"
        self.log_file = settings.log_dir / "kafka.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched = False

    @property
    def bootstrap(self) -> str:
        """``host:port`` that clients connect to."""
        return self.settings.bootstrap

    def ensure_jars(self) -> Path:
        """Fetch the broker's jars for ``settings.kafka_version`` once; return their folder.

        Example:
            >>> LocalKafka(Settings(home="/tmp/st")).ensure_jars()  # doctest: +SKIP
            PosixPath('/root/.cache/streamtune/kafka-4.1.1/libs')
        """
        return fetch_jars(self.settings.kafka_version)

    def start(self, timeout: float = 90) -> str:
        """Start the broker (or reuse the one from our pid file) and wait until it answers.

        Args:
            timeout: Seconds to wait for the broker to answer a list-topics request.

        Returns:
            The bootstrap address.

        Raises:
            ServiceError: Java or Maven is missing, the port is taken, or the broker did not come up.

        Example:
            >>> LocalKafka(Settings(home="/tmp/st")).start()  # doctest: +SKIP
            '127.0.0.1:19092'
        """
        if self.settings.kafka_bootstrap:
            if not _answers(self.bootstrap, timeout_s=min(timeout, 30)):
                raise ServiceError(
                    f"Kafka at {self.bootstrap} (STREAMTUNE_KAFKA_BOOTSTRAP) did not answer",
                    fix="check that the cluster is up and reachable, or unset it to run a local broker",
                )
            return self.bootstrap
        pid = self._read_pid()
        if pid is not None and _is_broker_process(pid):
            log.info("Reusing the local Kafka broker (pid %d) at %s", pid, self.bootstrap)
            self._wait_ready(pid, timeout)
            return self.bootstrap
        self.pid_file.unlink(missing_ok=True)
        self._check_ports_free()
        java = _require_java()
        libs = self.ensure_jars()
        self._prepare(java, libs)
        self._launch(java, libs)
        self._wait_ready(self._proc.pid if self._proc else -1, timeout)
        return self.bootstrap

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker recorded in the pid file: SIGTERM, wait ``timeout`` seconds, then SIGKILL.

        A no-op for an external cluster or when no broker runs.

        Example:
            >>> LocalKafka(Settings(home="/tmp/st")).stop()  # doctest: +SKIP
        """
        if self.settings.kafka_bootstrap:
            return
        pid = self._read_pid()
        if pid is not None and _is_broker_process(pid):
            log.info("Stopping the local Kafka broker (pid %d)", pid)
            _kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                log.warning("Kafka broker (pid %d) ignored SIGTERM for %.0fs; killing it", pid, timeout)
                _kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10)
        if self._proc is not None:
            self._proc.poll()  # reap our child even if it had already exited on its own
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        self._launched = False

    def is_running(self) -> bool:
        """True when our broker process is alive (or, for an external cluster, when it answers).

        Example:
            >>> LocalKafka(Settings(home="/tmp/st-none")).is_running()
            False
        """
        if self.settings.kafka_bootstrap:
            return _answers(self.bootstrap)
        pid = self._read_pid()
        return pid is not None and _is_broker_process(pid)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Only stop what this instance launched: a reused broker may belong to another session.
        if self._launched:
            self.stop()

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _check_ports_free(self) -> None:
        port = self.settings.kafka_port
        for p in (port, port + 1):
            if _port_open(p):
                raise ServiceError(
                    f"Port {p} is in use by another process; the local broker needs {port} and {port + 1}",
                    fix=f"set STREAMTUNE_KAFKA_PORT to a free port, {OR_EXTERNAL}",
                )

    def _prepare(self, java: str, libs: Path) -> None:
        """Write server.properties and the log4j2 config; format the KRaft storage the first time."""
        data = self.dir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        port = self.settings.kafka_port
        (self.dir / "server.properties").write_text(_server_properties(data, port, port + 1))
        (self.dir / "log4j2.properties").write_text(_LOG4J2)
        if (data / "meta.properties").exists():
            return
        cmd = [java, *self._jvm_props(), "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
               "-t", _new_cluster_id(), "-c", str(self.dir / "server.properties")]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise ServiceError("Formatting the local Kafka storage took over 120s") from None
        if done.returncode != 0:
            raise ServiceError(
                f"Could not format the local Kafka storage in {data}: {_tail(done.stdout + done.stderr)}",
                fix=f"remove {self.dir} and start again",
            )

    def _jvm_props(self) -> list[str]:
        return [f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", "-Djava.awt.headless=true"]

    def _launch(self, java: str, libs: Path) -> None:
        cmd = [java, f"-Xmx{self.settings.kafka_heap}", "-XX:+ExitOnOutOfMemoryError", *self._jvm_props(),
               "-cp", f"{libs}/*", "kafka.Kafka", str(self.dir / "server.properties")]  # fmt: skip
        with open(self.log_file, "ab") as out:
            out.write(f"\n=== streamtune: Kafka {self.settings.kafka_version} at {time.ctime()}\n".encode())
            out.flush()
            # A new session: Ctrl-C in the caller's terminal must not kill a broker other sessions reuse.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir,
                start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self._launched = True
        log.info("Started the local Kafka broker (pid %d); log: %s", self._proc.pid, self.log_file)

    def _wait_ready(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(pid):
                code = self._proc.poll() if self._proc else None
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"The local Kafka broker exited (code {code}) before it answered: {self._log_tail()}",
                    fix=f"see {self.log_file}",
                )
            if _port_open(self.settings.kafka_port) and _answers(self.bootstrap, timeout_s=5):
                return
            time.sleep(0.5)
        if self._launched:
            self.stop()
        raise ServiceError(
            f"The local Kafka broker did not answer at {self.bootstrap} within {timeout:.0f}s",
            fix=f"see {self.log_file}; a slow machine may need a longer timeout",
        )

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return _is_broker_process(pid)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):  # for our own child, poll() also reaps it, so no zombie is left
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def _log_tail(self) -> str:
        try:
            return _tail(self.log_file.read_text(errors="replace"))
        except OSError:
            return "(no log)"


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
