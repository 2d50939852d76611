"""The artifact store: one place by URI for requests, results, models, inline event files and job code.

A local folder by default, ``s3://`` by URI (``gs://`` through the same code, untested), all over
``pyarrow.fs``. Everything the controller hands to the cluster is a URI in it, never a local path.
"""

from streamtune.artifacts.code import pack_code, store_code
from streamtune.artifacts.store import ArtifactStore, is_remote, ray_uri
from streamtune.artifacts.verified import fetch_verified, stored_manifest_sha256

__all__ = [
    "ArtifactStore", "fetch_verified", "is_remote", "pack_code", "ray_uri", "store_code", "stored_manifest_sha256",
]
