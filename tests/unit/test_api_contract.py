"""The HTTP API's contract without services: the committed OpenAPI document, code packing, error bodies."""

from __future__ import annotations

import io
import json
import pathlib
import zipfile

import pytest

from streamtune.api.app import openapi_document
from streamtune.api.errors import status_for
from streamtune.control.code import pack_code, unpack_code
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


def test_packed_code_unpacks_to_the_same_package_and_is_reproducible(tmp_path):
    data = pack_code(ROOT / "jobs")
    assert data == pack_code(ROOT / "jobs")
    folder = unpack_code(data, tmp_path)
    assert folder.name == "jobs" and (folder / "tabular_gbdt.py").read_bytes() == (
        ROOT / "jobs" / "tabular_gbdt.py").read_bytes()
    assert not list(folder.rglob("__pycache__"))
    assert unpack_code(data, tmp_path) == folder


@pytest.mark.parametrize(("entries", "needle"), [
    ({"../evil.py": b"x"}, "paths must stay inside"),
    ({"/abs/evil.py": b"x"}, "paths must stay inside"),
    ({"a/x.py": b"x", "b/y.py": b"y"}, "one package folder"),
    ({"loose.py": b"x"}, "inside a package folder"),
])
def test_unsafe_code_archives_are_refused_and_nothing_is_written(tmp_path, entries, needle):
    with pytest.raises(ConfigError, match=needle):
        unpack_code(_zip(entries), tmp_path / "code")
    assert not (tmp_path / "code").exists() and not (tmp_path / "evil.py").exists()


def test_not_a_zip_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a zip"):
        unpack_code(b"hello", tmp_path)
