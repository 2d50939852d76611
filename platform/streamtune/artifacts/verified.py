"""Verify-then-load from a private copy: the bytes a loader reads are the bytes the manifest check read.

With the registry's digest of the manifest (``manifest_sha256``) a load checks the manifest against it first,
then the files against the manifest, so a model whose files were changed and whose manifest was regenerated
after registration is refused.

Example:
    >>> import pathlib, tempfile
    >>> from streamtune.registry.manifest import write_manifest
    >>> src = pathlib.Path(tempfile.mkdtemp()); _ = (src / "w.txt").write_text("weights")
    >>> _ = write_manifest(src)
    >>> with fetch_verified(str(src)) as folder:
    ...     (folder / "w.txt").read_text(), folder != src
    ('weights', True)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamtune.artifacts.store import ArtifactStore
from streamtune.registry.manifest import MANIFEST, manifest_digest, verify_manifest


def stored_manifest_sha256(uri: str) -> str:
    """The sha256 of the ``MANIFEST.json`` bytes stored in the artifact folder at ``uri`` (what registration
    records).

    Raises:
        DataError: the store has no such file.

    Example:
        >>> import pathlib, tempfile
        >>> from streamtune.registry.manifest import write_manifest
        >>> src = pathlib.Path(tempfile.mkdtemp()); _ = (src / "w.txt").write_text("weights")
        >>> _ = write_manifest(src)
        >>> stored_manifest_sha256(str(src)) == manifest_digest((src / "MANIFEST.json").read_bytes())
        True
    """
    return manifest_digest(ArtifactStore(uri).get_bytes(f"{uri.rstrip('/')}/{MANIFEST}"))


def fetch_verified_to(
    uri: str, dest: str | Path, *, manifest_sha256: str | None = None, what: str | None = None
) -> Path:
    """Copy the artifact folder at ``uri`` to ``dest`` (a folder only this process writes) and verify it there.

    Load from the returned folder: it holds exactly the bytes the manifest check read.

    Args:
        uri: The artifact folder.
        dest: A folder only this process writes.
        manifest_sha256: The manifest's digest the registry recorded; checked before the files. None for a
            version registered without one.
        what: How errors name the model (``"model sales v3"``).

    Raises:
        DataError: no folder at ``uri``.
        RegistryError: the manifest's digest differs from ``manifest_sha256`` (both named), or a file is
            missing, extra or changed against the manifest.
    """
    folder = ArtifactStore(uri).download_dir(uri, dest)
    verify_manifest(folder, manifest_sha256, what=what or f"artifact {uri}")
    return folder


@contextmanager
def fetch_verified(uri: str, *, manifest_sha256: str | None = None, what: str | None = None) -> Iterator[Path]:
    """Copy the artifact folder at ``uri`` into a fresh folder private to this process (mode 0700), verify
    it there (see :func:`fetch_verified_to`), and yield it; the copy is removed afterwards.

    Raises:
        DataError: no folder at ``uri``.
        RegistryError: the manifest's digest differs from ``manifest_sha256``, or a file is missing, extra or
            changed against the manifest.
    """
    scratch = Path(tempfile.mkdtemp(prefix="streamtune-artifact-"))  # mkdtemp: 0700, unique, ours alone
    try:
        yield fetch_verified_to(uri, scratch / "model", manifest_sha256=manifest_sha256, what=what)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
