"""Artifact manifests: each saved model lists its files with their sha256, checked before loading.

The manifest alone only catches accidents: anyone who can rewrite the files can rewrite the manifest too. So
the registry keeps the sha256 of the manifest's bytes (``ModelVersion.manifest_sha256``), taken when the version
is registered, and every load checks the manifest against that digest first, then the files against the
manifest (:func:`verify_manifest` with ``expected_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from streamtune.errors import RegistryError

MANIFEST = "MANIFEST.json"


SHA256_HEX = re.compile(r"[0-9a-f]{64}")
"""A sha256 as the registry stores it: 64 lower-case hex digits."""


def manifest_digest(data: bytes) -> str:
    """The sha256 of a manifest's bytes, as the registry records it.

    Example:
        >>> manifest_digest(b"{}")[:12]
        '44136fa355b3'
    """
    return hashlib.sha256(data).hexdigest()


def check_digest(value: str, field: str) -> str:
    """``value`` if it is a sha256 in 64 lower-case hex digits, else RegistryError naming ``field``.

    Example:
        >>> check_digest("ab" * 32, "manifest_sha256") == "ab" * 32
        True
        >>> check_digest("xyz", "manifest_sha256")
        Traceback (most recent call last):
        ...
        streamtune.errors.RegistryError: Got "xyz" for manifest_sha256; must be a sha256 in 64 lower-case hex digits
    """
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
        raise RegistryError(f'Got "{value}" for {field}; must be a sha256 in 64 lower-case hex digits')
    return value


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


def verify_manifest(folder: str | Path, expected_sha256: str | None = None, *, what: str | None = None) -> dict:
    """Check the manifest against the registry's digest (when given), then every file against the manifest.

    Args:
        folder: The artifact folder (a private copy: what is checked here is what gets loaded).
        expected_sha256: The manifest's sha256 the registry recorded at registration; None for a version
            registered before digests were kept (then only the files are checked against the manifest).
        what: How errors name the model, e.g. ``"model sales v3"``; the folder by default.

    Raises:
        RegistryError: the manifest is missing, its sha256 differs from ``expected_sha256`` (both digests
            named), or a file is missing or altered.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "m.txt").write_text("x"); _ = write_manifest(d)
        >>> digest = manifest_digest((d / MANIFEST).read_bytes())
        >>> sorted(verify_manifest(d, digest)["files"])
        ['m.txt']
        >>> verify_manifest(d, "0" * 64, what="model m v1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamtune.errors.RegistryError: model m v1 refused: its MANIFEST.json has sha256 ..., the registry ...
    """
    root = Path(folder)
    label = what or f"artifact {root}"
    path = root / MANIFEST
    if not path.is_file():
        raise RegistryError(f"{label} has no {MANIFEST} (in {root}); refusing to load an unverified model")
    data = path.read_bytes()
    if expected_sha256 is not None:
        found = manifest_digest(data)
        if found != expected_sha256:
            raise RegistryError(
                f"{label} refused: its {MANIFEST} has sha256 {found}, the registry recorded {expected_sha256} "
                "at registration; the manifest was rewritten after the version was registered (files changed "
                "and manifest regenerated?), so the artifact is not the registered model",
                fix="register a new version from a fresh run instead of editing a registered artifact",
            )
    manifest = json.loads(data)
    for name, entry in manifest["files"].items():
        file = root / name
        if not file.is_file():
            raise RegistryError(f"{label}: {MANIFEST} lists {name}, which is missing from the artifact")
        if _sha256(file) != entry["sha256"]:
            raise RegistryError(f"{label}: artifact file {file} does not match its manifest sha256; it was altered")
    return manifest
