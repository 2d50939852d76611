"""Job code shipped with a spec: packed by the submitting client, unpacked safely by the platform.

Example:
    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "jobs"; src.mkdir()
    >>> _ = (src / "__init__.py").write_text(""); _ = (src / "my_job.py").write_text("X = 1\\n")
    >>> data = pack_code(src)
    >>> folder = unpack_code(data, pathlib.Path(tempfile.mkdtemp()))
    >>> folder.name, sorted(p.name for p in folder.iterdir())
    ('jobs', ['__init__.py', 'my_job.py'])
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from streamtune.errors import ConfigError

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


def unpack_code(data: bytes, root: str | Path) -> Path:
    """Unpack a code zip under ``root/<sha256[:16]>/`` and return the package folder; idempotent per content.

    Raises:
        ConfigError: not a zip, no single top-level folder, a path that escapes it, or too large.
    """
    archive = _open(data)
    top = _single_top(archive)
    dest = Path(root) / hashlib.sha256(data).hexdigest()[:16]
    if (dest / top).is_dir():
        return dest / top
    partial = dest.with_name(dest.name + f".{os.getpid()}.part")
    shutil.rmtree(partial, ignore_errors=True)
    archive.extractall(partial)
    try:
        partial.rename(dest)
    except OSError:  # another request unpacked the same content first
        shutil.rmtree(partial, ignore_errors=True)
    return dest / top


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
