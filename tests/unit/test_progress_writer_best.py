"""ProgressWriter keeps the best *last* value over trials incrementally: exact against a full scan."""

import random

from streamtune.sweeps.progress import ProgressWriter, read_progress


def _scan_best(trials: dict[str, float], mode: str) -> float:
    return (min if mode == "min" else max)(trials.values())


def test_best_follows_a_running_trial_whose_last_value_gets_worse(tmp_path):
    w = ProgressWriter(str(tmp_path), metric="rmse", mode="min", planned=3, max_t=3, every_s=0)
    w.result("a", 1, {"rmse": 1.0})
    w.result("b", 1, {"rmse": 2.0})
    assert (w.progress.best_trial, w.progress.best) == ("a", 1.0)
    w.result("a", 2, {"rmse": 4.0})  # a's last value is now worse than b's
    assert (w.progress.best_trial, w.progress.best) == ("b", 2.0)
    w.ended("b", 1, error=False)  # b pruned at 2.0: final
    w.result("a", 3, {"rmse": 3.0})
    w.ended("a", 3, error=False)
    w.finish()
    p = read_progress(str(tmp_path))
    assert p is not None and p.finished
    assert (p.best_trial, p.best) == ("b", 2.0)
    assert p.counts() == {"running": 0, "done": 1, "pruned": 1, "error": 0}


def test_incremental_best_matches_a_full_scan_on_random_streams(tmp_path):
    rng = random.Random(7)
    for mode in ("min", "max"):
        w = ProgressWriter(str(tmp_path / mode), metric="m", mode=mode, planned=40, max_t=5, every_s=3600)
        last: dict[str, float] = {}
        running: list[str] = []
        for i in range(40):
            running.append(f"t{i}")
            while len(running) > 3 or (i == 39 and running):
                tid = running.pop(rng.randrange(len(running)))
                w.ended(tid, 5, error=False)
            for tid in running:
                v = rng.uniform(0, 10)
                last[tid] = v
                w.result(tid, 1, {"m": v})
                assert w.progress.best == _scan_best(last, mode)
        assert w.progress.best == _scan_best(last, mode)
