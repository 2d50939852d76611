"""Verify-then-load from a private copy: the bytes a loader reads are the bytes the manifest check read.

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
from streamtune.registry.manifest import verify_manifest


def fetch_verified_to(uri: str, dest: str | Path) -> Path:
    """Copy the artifact folder at ``uri`` to ``dest`` (a folder only this process writes) and verify it there.

    Load from the returned folder: it holds exactly the bytes the manifest check read.

    Raises:
        DataError: no folder at ``uri``.
        RegistryError: a file is missing, extra or changed against the manifest.
    """
    folder = ArtifactStore(uri).download_dir(uri, dest)
    verify_manifest(folder)
    return folder


@contextmanager
def fetch_verified(uri: str) -> Iterator[Path]:
    """Copy the artifact folder at ``uri`` into a fresh folder private to this process (mode 0700), verify
    its manifest there, and yield it; the copy is removed afterwards.

    Raises:
        DataError: no folder at ``uri``.
        RegistryError: a file is missing, extra or changed against the manifest.
    """
    scratch = Path(tempfile.mkdtemp(prefix="streamtune-artifact-"))  # mkdtemp: 0700, unique, ours alone
    try:
        yield fetch_verified_to(uri, scratch / "model")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
