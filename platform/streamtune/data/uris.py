"""The one URI check: may a data-arrival event (or a snapshot) name this file?

:func:`check_uri` runs when an event arrives (the ingestor) and again when a snapshot reads its files
(:meth:`~streamtune.data.snapshot.Snapshot.from_parts`), so a symlink swapped in between is caught at read time.

Rules, each named in the :class:`~streamtune.errors.DataError` it raises:

- a local path is absolute (plain or ``file://``); relative paths depend on the working folder and are refused;
- local paths are resolved (symlinks, ``..``) with ``os.path.realpath`` before they are compared with the roots,
  which are resolved the same way;
- object-store keys (``s3://``, ``gs://``) with ``.`` or ``..`` segments are refused; other schemes are refused;
- a root admits itself and what lies below it, on path boundaries: ``/data/sales`` does not admit
  ``/data/sales-secret``;
- empty dataset roots admit only the platform's own data folders (the artifact store root, and for the demo
  ``<STREAMTUNE_HOME>/data``), which the caller passes in.

Example:
    >>> check_uri("/data/sales/../sales/p0.parquet", ["/data/sales/"], "/srv/artifacts")
    '/data/sales/p0.parquet'
    >>> check_uri("s3://lake/sales/2026/p0.parquet", ["s3://lake/sales"], "/srv/artifacts")
    's3://lake/sales/2026/p0.parquet'
    >>> try:
    ...     check_uri("/data/sales-secret/p0.parquet", ["/data/sales"], "/srv/artifacts")
    ... except DataError as exc:
    ...     print(exc.headline)
    Got "/data/sales-secret/p0.parquet" for a data URI; it must lie under /data/sales
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Iterable, Sequence

from streamtune.errors import DataError

__all__ = ["UriChecker", "check_uri", "platform_roots"]

_REMOTE = ("s3://", "gs://", "gcs://")
_DIR_CACHE_TTL_S = 5.0


def platform_roots(artifact_root: str, home: str | os.PathLike[str] | None = None) -> list[str]:
    """The platform's own data folders: the artifact store root, plus ``<home>/data`` when a home is given.

    Example:
        >>> platform_roots("/srv/st/artifacts", "/srv/st")
        ['/srv/st/artifacts', '/srv/st/data']
    """
    roots = [artifact_root]
    if home is not None:
        roots.append(os.path.join(os.fspath(home), "data"))
    return roots


def check_uri(uri: str, roots: Sequence[str], platform_root: str | Sequence[str]) -> str:
    """Return ``uri`` normalized if it lies under ``roots`` (or, with no roots, under ``platform_root``).

    Args:
        uri: An absolute path, ``file://`` URI, or ``s3://`` / ``gs://`` URI from an event.
        roots: The dataset's ``uri_roots``; empty admits only the platform's own folders.
        platform_root: The platform's data folder(s): the artifact store root, ``<home>/data``.

    Returns:
        The normalized URI: a resolved absolute path for local files, the URI itself for object stores.

    Raises:
        DataError: naming the value and the rule it breaks.

    Example:
        >>> check_uri("file:///srv/artifacts/inline/r-1.parquet", [], "/srv/artifacts")
        '/srv/artifacts/inline/r-1.parquet'
        >>> try:
        ...     check_uri("file:///etc/passwd", [], ["/srv/artifacts"])
        ... except DataError as exc:
        ...     print(exc.headline)
        Got "file:///etc/passwd" for a data URI (it resolves to /etc/passwd); it must lie under /srv/artifacts
    """
    return UriChecker(roots, platform_root, cache_s=0.0).check(uri)


class UriChecker:
    """:func:`check_uri` for one set of roots, with the resolved roots kept and, for the ingest path, resolved
    parent folders cached for ``cache_s`` seconds (the file itself is always looked at; a snapshot re-checks
    every URI uncached when it reads).

    Example:
        >>> UriChecker(["/data/sales"], "/srv/artifacts").check("/data/sales/./a/../p1.parquet")
        '/data/sales/p1.parquet'
    """

    def __init__(self, roots: Sequence[str], platform_root: str | Sequence[str], *, cache_s: float = _DIR_CACHE_TTL_S
                 ) -> None:
        fallback = [platform_root] if isinstance(platform_root, str) else list(platform_root)
        self.roots = [r for r in (list(roots) or fallback) if r]
        self._cache_s = cache_s
        self._dirs: dict[str, tuple[str, float]] = {}
        self._local = [_resolve_root(r) for r in self.roots if not r.startswith(_REMOTE)]
        self._remote = [_remote_root(r) for r in self.roots if r.startswith(_REMOTE)]

    def check(self, uri: str) -> str:
        """Return the normalized ``uri`` or raise :class:`DataError` naming the rule."""
        if not isinstance(uri, str) or not uri.strip():
            raise DataError(f'Got "{uri}" for a data URI; it must be a non-empty path or URI')
        if "\x00" in uri:
            raise DataError(f'Got "{uri!r}" for a data URI; it must not contain NUL characters')
        if uri.startswith(_REMOTE):
            return self._check_remote(uri)
        path = _local_path(uri)
        resolved = self._realpath(path)
        if not any(_under(resolved, root) for root in self._local):
            shown = f" (it resolves to {resolved})" if resolved != uri else ""
            raise DataError(f'Got "{uri}" for a data URI{shown}; it must lie under {self._rule()}',
                            fix="add its folder to dataset.uri_roots, or move the file there")
        return resolved

    def _check_remote(self, uri: str) -> str:
        scheme, _, rest = uri.partition("://")
        bucket, _, key = rest.partition("/")
        segments = key.split("/")
        if not bucket or any(s in (".", "..") for s in segments):
            raise DataError(f'Got "{uri}" for a data URI; object-store keys must name a bucket and may not '
                            "contain '.' or '..' segments")
        if not any(_under(f"{scheme}://{rest}", root) for root in self._remote):
            raise DataError(f'Got "{uri}" for a data URI; it must lie under {self._rule()}',
                            fix="add its prefix to dataset.uri_roots")
        return uri

    def _realpath(self, path: str) -> str:
        if self._cache_s <= 0:
            return os.path.realpath(path)
        parent, name = os.path.split(path)
        if os.path.islink(path) or name in ("", ".", ".."):
            return os.path.realpath(path)
        now = time.monotonic()
        hit = self._dirs.get(parent)
        if hit is None or hit[1] < now:
            if len(self._dirs) > 10_000:
                self._dirs.clear()
            hit = self._dirs[parent] = (os.path.realpath(parent), now + self._cache_s)
        return os.path.join(hit[0], name)

    def _rule(self) -> str:
        return ", ".join(self.roots) if self.roots else "an allowed root (none is configured)"


def _local_path(uri: str) -> str:
    if uri.startswith("file://"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise DataError(f'Got "{uri}" for a data URI; a file:// URI must name this host (file:///path)')
        path = urllib.parse.unquote(parsed.path)
    elif "://" in uri:
        raise DataError(f'Got "{uri}" for a data URI; it must be an absolute path, file://, s3:// or gs://')
    else:
        path = uri
    if not os.path.isabs(path):
        raise DataError(f'Got "{uri}" for a data URI; a local path must be absolute (a relative one depends on '
                        "the working folder)")
    return os.path.normpath(path)


def _resolve_root(root: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlparse(root).path) if root.startswith("file://") else root
    return os.path.realpath(os.path.expanduser(path))


def _remote_root(root: str) -> str:
    return root.rstrip("/")


def _under(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it, on a path boundary."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root.endswith("/") else root + "/")


def check_all(uris: Iterable[str], checker: UriChecker) -> list[str]:
    """Normalize every URI with ``checker``, keeping the first of duplicates, in order.

    Example:
        >>> check_all(["/d/a.parquet", "/d/./a.parquet", "/d/b.parquet"], UriChecker(["/d"], []))
        ['/d/a.parquet', '/d/b.parquet']
    """
    return list(dict.fromkeys(checker.check(u) for u in uris))
