"""LocalKafka's pure parts: the shipped pom, generated configs, Java checks (no broker is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamtune.config.settings import Settings
from streamtune.embedded import LocalKafka, kafka_jars
from streamtune.embedded import kafka as kafka_mod
from streamtune.errors import ServiceError

REPO = Path(__file__).resolve().parents[2]


def test_packaged_pom_is_the_deploy_pom() -> None:
    packaged = (REPO / "platform/streamtune/embedded/kafka_pom.xml").read_text()
    assert packaged == (REPO / "deploy/kafka/pom.xml").read_text()
    assert kafka_jars._pom_text() == packaged
    assert "<kafka.version>4.1.1</kafka.version>" in packaged
    assert "log4j-slf4j-impl" in packaged


def test_server_properties_is_a_single_node_kraft_broker(tmp_path: Path) -> None:
    props = dict(
        line.split("=", 1)
        for line in kafka_mod._server_properties(tmp_path, 29092, 29093).splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["log.dirs"] == str(tmp_path)
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_402"', 8),
        ("garbage", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert kafka_jars._java_major(output) == major


def test_missing_java_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_jars.shutil, "which", lambda name: None)
    with pytest.raises(ServiceError) as info:
        kafka_jars._require_java()
    assert info.value.headline == "Java not found; the local Kafka broker needs Java 17+"
    assert info.value.fix is not None and "openjdk-17-jre-headless" in info.value.fix


def test_missing_maven_says_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kafka_jars.shutil, "which", lambda name: None)
    with pytest.raises(ServiceError) as info:
        kafka_jars.fetch_jars("4.1.1", tmp_path / "libs")
    assert "Maven (mvn) not found" in info.value.headline


def test_fetch_skips_when_marker_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    libs = tmp_path / "kafka-4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs / kafka_jars.COMPLETE_MARKER).write_text("done")
    monkeypatch.setenv("STREAMTUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(kafka_jars.shutil, "which", lambda name: None)  # Maven is not even looked for
    assert LocalKafka(Settings(home=tmp_path / "home")).ensure_jars() == libs


def test_no_pid_file_means_not_running(tmp_path: Path) -> None:
    kafka = LocalKafka(Settings(home=tmp_path, kafka_port=29092))
    assert kafka.bootstrap == "127.0.0.1:29092"
    assert not kafka.is_running()
    kafka.stop()  # a no-op, not an error
    (tmp_path / "kafka").mkdir()
    kafka.pid_file.write_text("999999999\n")  # a stale pid file
    assert not kafka.is_running()


def test_external_bootstrap_is_used_as_is(tmp_path: Path) -> None:
    kafka = LocalKafka(Settings(home=tmp_path, kafka_bootstrap="broker.example:9092"))
    assert kafka.bootstrap == "broker.example:9092"
    kafka.stop()  # never touches an external cluster
