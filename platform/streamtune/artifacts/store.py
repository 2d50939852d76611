"""``ArtifactStore``: read and write artifacts by URI over ``pyarrow.fs``.

A URI is an absolute local path (or ``file://`` URI) or an ``s3://bucket/key`` (``gs://``) URI. S3-compatible
stores are reached through ``AWS_ENDPOINT_URL`` (``STREAMTUNE_S3_ENDPOINT`` sets it), which pyarrow, boto3
and Ray's runtime_env downloads all honour.

Example:
    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> uri = store.join("runs", "r-1", "request.json")
    >>> _ = store.put_text(uri, '{"a": 1}'); store.get_text(uri), store.exists(uri)
    ('{"a": 1}', True)
    >>> ray_uri("/tmp/code/x.zip"), ray_uri("s3://b/code/x.zip")
    ('file:///tmp/code/x.zip', 's3://b/code/x.zip')
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs as pafs

from streamtune.config.settings import Settings
from streamtune.errors import ConfigError, DataError

_REMOTE = ("s3://", "gs://", "gcs://")


def is_remote(uri: str) -> bool:
    """True for an object-store URI (``s3://``, ``gs://``).

    Example:
        >>> is_remote("s3://b/k"), is_remote("/data/x.parquet")
        (True, False)
    """
    return uri.startswith(_REMOTE)


def ray_uri(uri: str) -> str:
    """The URI Ray's runtime_env wants for a zip in the store: ``file://`` for a local path."""
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` and the path within it.

    Raises:
        ConfigError: the scheme is not supported, naming the value and the rule.
    """
    if uri.startswith("file://"):
        return pafs.LocalFileSystem(), urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    if not is_remote(uri):
        raise ConfigError(f'Got "{uri}" for an artifact URI; must be an absolute path, file://, s3:// or gs://')
    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:
        raise ConfigError(f'Got "{uri}" for an artifact URI; pyarrow cannot open it: {exc}') from None


class ArtifactStore:
    """Artifacts under one root URI.

    Args:
        root: An absolute folder, ``file://``, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") if is_remote(root) else os.path.abspath(filesystem(root)[1])

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        """The store at ``settings.artifact_root``; ``settings.s3_endpoint`` becomes ``AWS_ENDPOINT_URL`` for this
        process and its children unless that is set already."""
        if settings.s3_endpoint:
            os.environ.setdefault("AWS_ENDPOINT_URL", settings.s3_endpoint)
        return cls(settings.artifact_root)

    def join(self, *parts: str) -> str:
        """The URI of ``parts`` under the root."""
        return posixpath.join(self.root, *parts) if is_remote(self.root) else os.path.join(self.root, *parts)

    def contains(self, uri: str) -> bool:
        """True when ``uri`` lies under this store's root."""
        return uri == self.root or uri.startswith(self.root.rstrip("/") + "/")

    # -- files ---------------------------------------------------------------------------------------

    def put_bytes(self, uri: str, data: bytes) -> str:
        """Write ``data`` at ``uri`` (parents created); return the URI.

        A reader never sees part of the file: on a local disk it is written under a temporary name and renamed
        into place; an object store replaces objects whole.
        """
        fs, path = filesystem(uri)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        local = isinstance(fs, pafs.LocalFileSystem)
        target = f"{path}.tmp-{os.getpid()}" if local else path
        with fs.open_output_stream(target) as out:
            out.write(data)
        if local:
            fs.move(target, path)
        return uri

    def get_bytes(self, uri: str) -> bytes:
        """Read the file at ``uri``.

        Raises:
            DataError: it does not exist or cannot be read.
        """
        fs, path = filesystem(uri)
        try:
            with fs.open_input_stream(path) as stream:
                return bytes(stream.read())
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"cannot read {uri}: {exc}") from None

    def put_text(self, uri: str, text: str) -> str:
        """Write UTF-8 text at ``uri``."""
        return self.put_bytes(uri, text.encode())

    def get_text(self, uri: str) -> str:
        """Read UTF-8 text from ``uri``."""
        return self.get_bytes(uri).decode()

    def exists(self, uri: str) -> bool:
        """True when a file or folder is at ``uri``."""
        fs, path = filesystem(uri)
        return bool(fs.get_file_info(path).type != pafs.FileType.NotFound)

    # -- folders -------------------------------------------------------------------------------------

    def upload_dir(self, local: str | Path, uri: str) -> str:
        """Copy a local folder to ``uri``; return the URI."""
        fs, path = filesystem(uri)
        fs.create_dir(path, recursive=True)
        pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        return uri

    def download_dir(self, uri: str, local: str | Path) -> Path:
        """Copy the folder at ``uri`` into a local folder; return it."""
        fs, path = filesystem(uri)
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            raise DataError(f"no artifact folder at {uri}")
        Path(local).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        return Path(local)


def group_by_filesystem(uris: Iterable[str]) -> list[tuple[pafs.FileSystem, list[str]]]:
    """Group URIs by the filesystem that reads them (one pyarrow dataset per group).

    Example:
        >>> [(type(fs).__name__, paths) for fs, paths in group_by_filesystem(["/a/1.parquet", "/a/2.parquet"])]
        [('LocalFileSystem', ['/a/1.parquet', '/a/2.parquet'])]
    """
    groups: dict[str, tuple[pafs.FileSystem, list[str]]] = {}
    for uri in uris:
        fs, path = filesystem(uri)
        parsed = urllib.parse.urlparse(uri) if is_remote(uri) else None
        key = f"{parsed.scheme}://{parsed.netloc}" if parsed else "local"  # one filesystem per bucket
        groups.setdefault(key, (fs, []))[1].append(path)
    return list(groups.values())
