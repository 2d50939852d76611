"""The local Kafka broker's jars: found with Maven from ``kafka_pom.xml`` into a shared cache, and Java checked.

Example:
    >>> from streamtune.embedded.kafka_jars import fetch_jars
    >>> fetch_jars("4.1.1")  # doctest: +SKIP
    PosixPath('/root/.cache/streamtune/kafka-4.1.1/libs')
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from streamtune.errors import ServiceError

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"
OR_EXTERNAL = "or set STREAMTUNE_KAFKA_BOOTSTRAP to an existing cluster"
_JAVA_FIX = f"apt-get install -y openjdk-17-jre-headless, {OR_EXTERNAL}"
_MVN_FIX = f"apt-get install -y maven, {OR_EXTERNAL}"
_FETCH_TIMEOUT_S = 1200


def _cache_root() -> Path:
    env = os.environ.get("STREAMTUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "streamtune"


def _java_major(version_output: str) -> int | None:
    """Major version in ``java -version`` output; ``1.8.0_x`` is 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("Java not found; the local Kafka broker needs Java 17+", fix=_JAVA_FIX)
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"Could not run {java} -version: {exc}", fix=_JAVA_FIX) from None
    major = _java_major(out.stderr + out.stdout)
    if major is None or major < 17:
        shown = "unknown" if major is None else major
        raise ServiceError(f'Got Java "{shown}" at {java}; the local Kafka broker needs 17+', fix=_JAVA_FIX)
    return java


def _pom_text() -> str:
    try:
        return (resources.files("streamtune.embedded") / "kafka_pom.xml").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        raise ServiceError(
            "streamtune/embedded/kafka_pom.xml is missing from the installed package",
            fix="reinstall streamtune, or fetch the jars with deploy/kafka/fetch.sh",
        ) from None


def fetch_jars(version: str, dest: Path | None = None) -> Path:
    """Copy the Kafka broker's runtime jars into ``dest`` with Maven, once.

    Does the same as ``deploy/kafka/fetch.sh``: skips when ``dest/.complete`` exists, and fills a temporary
    sibling folder that it renames into place, so concurrent callers never see half a classpath.

    Args:
        version: Apache Kafka version, e.g. ``"4.1.1"``.
        dest: Target folder (default ``${STREAMTUNE_CACHE:-~/.cache/streamtune}/kafka-<version>/libs``).

    Returns:
        The folder holding the jars.

    Raises:
        ServiceError: Maven is missing or the download failed.

    Example:
        >>> fetch_jars("4.1.1")  # doctest: +SKIP
        PosixPath('/root/.cache/streamtune/kafka-4.1.1/libs')
    """
    dest = dest or _cache_root() / f"kafka-{version}" / "libs"
    if (dest / COMPLETE_MARKER).exists():
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (mvn) not found; it fetches the local Kafka broker's jars", fix=_MVN_FIX)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _run_maven(mvn, version, tmp)
        (tmp / COMPLETE_MARKER).write_text(f"kafka {version}\n")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / COMPLETE_MARKER).exists():  # a stale, incomplete dest: replace it
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("Fetched Kafka %s jars into %s", version, dest)
    return dest


def _run_maven(mvn: str, version: str, out_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="streamtune-pom-") as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_pom_text(), encoding="utf-8")
        cmd = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), f"-Dkafka.version={version}",
            "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={out_dir}",
        ]  # fmt: skip
        log.info("Fetching Kafka %s jars with Maven (first run only)", version)
        try:
            done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ServiceError(
                f"Maven did not finish fetching Kafka {version} within {_FETCH_TIMEOUT_S}s",
                fix=f"check network access to the Maven repository, {OR_EXTERNAL}",
            ) from None
    if done.returncode != 0 or not any(out_dir.glob("kafka_*.jar")):
        output = tail(done.stdout + done.stderr)
        raise ServiceError(
            f"Maven could not fetch Kafka {version} (exit {done.returncode}): {output}",
            fix=f"check the version and network access to the Maven repository, {OR_EXTERNAL}",
        )


def tail(text: str, lines: int = 5) -> str:
    """The last ``lines`` lines of ``text`` on one line, for error headlines."""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
