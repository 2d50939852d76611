"""The HTTP API's contract without services: the committed OpenAPI document, code packing, error bodies."""

from __future__ import annotations

import io
import json
import pathlib
import zipfile

import pytest

from streamtune.api.app import openapi_document
from streamtune.api.errors import status_for
from streamtune.artifacts import ArtifactStore, pack_code, store_code
from streamtune.errors import CommandFailed, ConfigError, NotFoundError, ServiceError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_committed_openapi_document_is_what_the_code_serves():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(openapi_document())), "run `make openapi` and commit docs/openapi.json"


def test_every_operation_is_documented_and_token_protected_but_health():
    doc = openapi_document()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            assert op.get("summary") and op.get("description"), f"{method.upper()} {path} has no docstring"
            secured = any("HTTPBearer" in s for s in op.get("security", []))
            assert secured == (path != "/healthz"), f"{method.upper()} {path}"


@pytest.mark.parametrize(("error", "status"), [(NotFoundError("x"), 404), (CommandFailed("x"), 409),
                                               (ConfigError("x"), 422), (ServiceError("x"), 503)])
def test_errors_map_to_statuses(error, status):
    assert status_for(error) == status


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_stored_code_is_reproducible_content_addressed_and_wrapped_for_ray(tmp_path):
    store = ArtifactStore(str(tmp_path))
    data = pack_code(ROOT / "jobs")
    assert data == pack_code(ROOT / "jobs")
    uri = store_code(store, data)
    assert uri == store_code(store, data) and uri.startswith(str(tmp_path / "code"))
    names = zipfile.ZipFile(io.BytesIO(store.get_bytes(uri))).namelist()
    assert "code/jobs/tabular_gbdt.py" in names and not [n for n in names if "__pycache__" in n]
    stored = zipfile.ZipFile(io.BytesIO(store.get_bytes(uri))).read("code/jobs/tabular_gbdt.py")
    assert stored == (ROOT / "jobs" / "tabular_gbdt.py").read_bytes()


@pytest.mark.parametrize(("entries", "needle"), [
    ({"../evil.py": b"x"}, "paths must stay inside"),
    ({"/abs/evil.py": b"x"}, "paths must stay inside"),
    ({"a/x.py": b"x", "b/y.py": b"y"}, "one package folder"),
    ({"loose.py": b"x"}, "inside a package folder"),
])
def test_unsafe_code_archives_are_refused_and_nothing_is_written(tmp_path, entries, needle):
    with pytest.raises(ConfigError, match=needle):
        store_code(ArtifactStore(str(tmp_path / "store")), _zip(entries))
    assert not (tmp_path / "store").exists()


def test_not_a_zip_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a zip"):
        store_code(ArtifactStore(str(tmp_path)), b"hello")
