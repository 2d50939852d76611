"""The HTTP control API on real HTTP (uvicorn) with the session's Kafka broker: tokens, limits, the remote SDK,
code shipped with a spec, and schemathesis against the committed OpenAPI document."""

from __future__ import annotations

import io
import pathlib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from fixtures_ray import free_port
from streamtune import Client, CommandStatus, DataArrival, NotFoundError, Settings
from streamtune.api.auth import hash_token, new_token
from streamtune.api.server import ApiServer, start_api
from streamtune.artifacts import ArtifactStore
from streamtune.errors import AuthError
from streamtune.registry import open_registry
from streamtune.registry.base import Registry

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")


@dataclass
class Api:
    server: ApiServer
    token: str
    registry: Registry
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.token}"}


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = Settings(home=tmp_path_factory.mktemp("api-home"), kafka_bootstrap=kafka_bootstrap,
                        api_port=free_port(), max_body_bytes=64 * 1024, max_rows=50, command_timeout=5)
    registry = open_registry(settings.registry_url)
    token = new_token()
    registry.add_token("ana", hash_token(token))
    server = start_api(settings)
    yield Api(server, token, registry, settings)
    server.stop()
    registry.close()


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/status"), ("GET", "/v1/runs"),
                                              ("POST", "/v1/commands"), ("POST", "/v1/models/m/predict"),
                                              ("POST", "/v1/events"), ("POST", "/v1/code")])
def test_a_missing_wrong_or_revoked_token_gets_401_and_no_detail(api: Api, method: str, path: str) -> None:
    revoked = new_token()
    api.registry.add_token("gone", hash_token(revoked))
    api.registry.revoke_tokens("gone")
    for headers in ({}, api.auth("st_wrong"), api.auth(revoked), {"authorization": api.token}):
        response = requests.request(method, api.url + path, headers=headers, json={}, timeout=5)
        assert response.status_code == 401, (headers, response.text)
        assert response.json() == {"message": "unauthorized"}
    assert requests.get(api.url + "/healthz", timeout=5).json() == {"status": "ok", "active": False}


def test_limits_answer_413_and_422_with_a_json_message(api: Api) -> None:
    big = requests.post(api.url + "/v1/events", headers=api.auth(), data=b"x" * (65 * 1024), timeout=5)
    assert big.status_code == 413 and "the limit is 65536 bytes" in big.json()["message"]
    rows = requests.post(api.url + "/v1/models/m/predict", headers=api.auth(), json={"rows": [{"x": 1}] * 51},
                         timeout=5)
    assert rows.status_code == 422 and "limit is 50" in rows.json()["message"]
    events = [DataArrival(dataset="d", uris=["/x"], num_rows=1).model_dump(mode="json")] * 51
    many = requests.post(api.url + "/v1/events", headers=api.auth(), json={"events": events}, timeout=5)
    assert many.status_code == 422 and "limit is 50" in many.json()["message"]
    bad = requests.post(api.url + "/v1/commands", headers=api.auth(), json={"command": {"kind": "explode"}},
                        timeout=5)
    assert bad.status_code == 422 and "does not match any of the expected tags" in bad.json()["message"]
    missing = requests.get(api.url + "/v1/nowhere", headers=api.auth(), timeout=5)
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found"}


def test_the_remote_sdk_reads_appends_and_publishes_as_the_tokens_owner(api: Api) -> None:
    client = Client(api.url, token=api.token, actor="mallory")
    assert client.status().controller is None and client.runs() == [] and client.models() == []
    paused = client.pause("ctr", reason="remote", wait=False)
    assert (paused.actor, paused.status, paused.reason) == ("ana", CommandStatus.PENDING, "remote")
    assert client.command(paused.id) == paused and client.commands()[0].id == paused.id
    topic = f"api-{uuid.uuid4().hex[:8]}"
    landed = client.publish([DataArrival(dataset="d", rows=[{"x": 1}], num_rows=1)] * 2, topic)
    assert [(p.topic, p.offset) for p in landed] == [(topic, 0), (topic, 1)]
    with pytest.raises(NotFoundError, match='Got "r-nope" for run'):
        client.run("r-nope")
    assert client.find_run("r-nope") is None and client.champion("none") is None
    with pytest.raises(NotFoundError, match='Got "ctr" for model; no model of that name'):
        client.promote("ctr", 1)
    with pytest.raises(AuthError, match="missing or unknown token"):
        Client(api.url, token="st_wrong").runs()
    client.close()


def test_submitting_from_another_machine_ships_the_job_code(api: Api) -> None:
    client = Client(api.url, token=api.token)
    record = client.submit(ROOT / "configs" / "demo.yaml", wait=False)
    uri = record.command.spec.job.code_uri
    store = ArtifactStore(api.settings.artifact_root)
    assert uri.startswith(store.join("code")) and uri.endswith(".zip") and store.exists(uri)
    stored = zipfile.ZipFile(io.BytesIO(store.get_bytes(uri))).read("code/jobs/tabular_gbdt.py")
    assert stored == (ROOT / "jobs" / "tabular_gbdt.py").read_bytes()
    again = client.submit(ROOT / "configs" / "demo.yaml", wait=False)
    assert again.command.spec.job.code_uri == uri  # content-addressed: the same code is stored once
    client.close()


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error_and_every_error_has_a_message(case, api: Api) -> None:
    response = case.call(base_url=api.url, headers=api.auth(), timeout=10)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and body.get("message"), response.text[:300]
