"""Crash test: the real controller is SIGKILLed at 6 named kill points while 2,000 events stream in over 3
partitions, and restarted each time; every good event lands in exactly one run and every malformed one in the
dead-letter topic. The harness is ``benchmarks/ingest_soak.py`` (the same script, with 10,000 events, is the soak
benchmark); no Ray is needed, since the spec is paused."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _soak_module():
    spec = importlib.util.spec_from_file_location("ingest_soak", ROOT / "benchmarks" / "ingest_soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ingest_soak"] = module
    spec.loader.exec_module(module)
    return module


def test_sigkill_at_named_kill_points_loses_nothing_and_counts_nothing_twice(kafka_bootstrap, tmp_path):
    soak = _soak_module()
    result = soak.run_soak(kafka_bootstrap, tmp_path, events=2000)
    print(f"\n[ingest crash] {result}")
    assert result["kills"] == len(soak.KILLS) >= 5
    assert all(k["returncode"] == -9 for k in result["kill_points"])
    assert result["events"] >= 2000 and result["malformed"] > 100 and result["producer_retries"] > 0
    assert result["lost"] == 0 and result["duplicates"] == 0 and result["foreign_ids"] == 0
    assert result["rows_match"] and result["overlapping_windows"] == 0
    assert result["distinct_run_ids"] == result["windows"] > 0
    assert result["malformed_missing_from_dlq"] == 0 and result["good_in_dlq"] == 0
    assert result["ok"]
