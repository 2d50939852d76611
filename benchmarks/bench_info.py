"""What a benchmark result records about where it ran: the machine, its load, Ray, and which streamtune code.

``code`` says which streamtune was measured: its folder, and either ``STREAMTUNE_BENCH_CODE`` (set it when
running from a snapshot, e.g. ``git archive HEAD`` unpacked elsewhere, which has no ``.git``) or the checkout's
commit and whether ``platform/`` or ``jobs/`` had uncommitted changes.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages (2 shared cores: other work shows here)."""
    return [round(x, 2) for x in os.getloadavg()]


def code() -> dict[str, Any]:
    import streamtune

    where = Path(streamtune.__file__).resolve().parents[1]
    if os.environ.get("STREAMTUNE_BENCH_CODE"):
        return {"streamtune": str(where), "what": os.environ["STREAMTUNE_BENCH_CODE"]}
    root = where.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "platform", "jobs"],
                               capture_output=True, text=True, check=True).stdout.strip() != ""
    except (OSError, subprocess.CalledProcessError):
        return {"streamtune": str(where), "what": "unknown (not a git checkout)"}
    return {"streamtune": str(where), "commit": commit, "uncommitted_changes": dirty}


def machine() -> dict[str, Any]:
    """Host, CPUs, Python, OS, Ray, date, load now, and the streamtune code measured."""
    import ray

    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "ray": ray.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_at_end": load(), "code": code()}
