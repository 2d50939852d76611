"""Job code by URI: a spec's job package, zipped by whoever submits it and kept in the artifact store.

The stored zip holds one wrapper folder around the package (``code/jobs/...``): Ray's runtime_env strips the
wrapper of a remote ``py_modules`` zip and puts the folder holding the package on ``sys.path``, so the job
driver, every trial and every Serve replica import the package from the same content-addressed URI.

Example:
    >>> import pathlib, tempfile
    >>> from streamtune.artifacts.store import ArtifactStore
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "jobs"; src.mkdir()
    >>> _ = (src / "__init__.py").write_text(""); _ = (src / "my_job.py").write_text("X = 1\\n")
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> uri = store_code(store, pack_code(src))
    >>> uri.endswith(".zip") and uri == store_code(store, pack_code(src))
    True
    >>> import zipfile, io; sorted(zipfile.ZipFile(io.BytesIO(store.get_bytes(uri))).namelist())
    ['code/jobs/__init__.py', 'code/jobs/my_job.py']
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path, PurePosixPath

from streamtune.artifacts.store import ArtifactStore
from streamtune.errors import ConfigError

_WRAPPER = "code"
_SKIP_DIRS = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
MAX_FILES = 5000


def pack_code(folder: str | Path) -> bytes:
    """Zip a job package folder (top-level entry: the folder's name), without caches and bytecode."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise ConfigError(f'Got "{folder}" for job.code; no such folder',
                          fix="point job.code at the package that holds the entrypoint")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = Path(dirpath) / name
                info = zipfile.ZipInfo(f"{root.name}/{path.relative_to(root).as_posix()}", (1980, 1, 1, 0, 0, 0))
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def store_code(store: ArtifactStore, data: bytes) -> str:
    """Check a package zip from :func:`pack_code`, wrap it for Ray and keep it in ``store``; return its URI.

    The URI is content-addressed (``code/<sha256[:16]>.zip``), so storing the same code twice is a no-op.

    Raises:
        ConfigError: not a zip, no single top-level package folder, a path that escapes it, or too large.
    """
    archive = _open(data)
    _single_top(archive)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wrapped:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if not info.is_dir():
                entry = zipfile.ZipInfo(f"{_WRAPPER}/{info.filename}", (1980, 1, 1, 0, 0, 0))
                wrapped.writestr(entry, archive.read(info), zipfile.ZIP_DEFLATED)
    body = buffer.getvalue()
    uri = store.join("code", hashlib.sha256(body).hexdigest()[:16] + ".zip")
    if not store.exists(uri):
        store.put_bytes(uri, body)
    return uri


def _open(data: bytes) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ConfigError("the uploaded job code is not a zip archive") from None
    infos = archive.infolist()
    if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
        raise ConfigError(f"the uploaded job code unpacks to more than {MAX_FILES} files or "
                          f"{MAX_UNPACKED_BYTES // 2**20} MiB")
    return archive


def _single_top(archive: zipfile.ZipFile) -> str:
    tops = set()
    for name in archive.namelist():
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name:
            raise ConfigError(f'Got "{name}" in the uploaded job code; paths must stay inside the package')
        if len(path.parts) < 2 and not name.endswith("/"):
            raise ConfigError(f'Got "{name}" at the top of the uploaded job code; it must be inside a package folder')
        tops.add(path.parts[0])
    if len(tops) != 1:
        raise ConfigError(f"the uploaded job code must hold one package folder; got {sorted(tops)[:5]}")
    return tops.pop()
