"""Artifact manifests: each saved model lists its files with their sha256, checked before loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from streamtune.errors import RegistryError

MANIFEST = "MANIFEST.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: str | Path, **meta: object) -> dict:
    """Write ``MANIFEST.json`` listing every file under ``folder`` with its sha256 and size.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "m.txt").write_text("x")
        1
        >>> sorted(write_manifest(d)["files"])
        ['m.txt']
    """
    root = Path(folder)
    files = {
        str(p.relative_to(root)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    if not files:
        raise RegistryError(f"artifact folder {root} is empty; the job's save_model wrote no files")
    manifest = {"files": files, **meta}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def verify_manifest(folder: str | Path) -> dict:
    """Check every file in ``MANIFEST.json`` exists with its recorded sha256.

    Raises:
        RegistryError: the manifest is missing, or a file is missing or altered.
    """
    root = Path(folder)
    path = root / MANIFEST
    if not path.is_file():
        raise RegistryError(f"artifact {root} has no {MANIFEST}; refusing to load an unverified model")
    manifest = json.loads(path.read_text())
    for name, entry in manifest["files"].items():
        file = root / name
        if not file.is_file():
            raise RegistryError(f"artifact {root} lacks {name}, listed in its manifest")
        if _sha256(file) != entry["sha256"]:
            raise RegistryError(f"artifact file {file} does not match its manifest sha256; it was altered")
    return manifest
