"""PSI of live predictions against the gate's holdout predictions, and the replicas' fixed prediction bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamtune.observe.drift import group_cuts, holdout_histogram, psi
from streamtune.serving.records import PREDICTION_EDGES, RequestCounts, prediction_histogram
from streamtune.validation.holdout import scores_table


def _hist(values) -> dict[int, int]:
    return prediction_histogram([float(v) for v in values])


def test_bins_are_fixed_sorted_and_cover_both_signs():
    assert list(PREDICTION_EDGES) == sorted(PREDICTION_EDGES) and len(set(PREDICTION_EDGES)) == len(PREDICTION_EDGES)
    assert PREDICTION_EDGES[len(PREDICTION_EDGES) // 2] == 0.0
    assert PREDICTION_EDGES[-1] == 9e7 and PREDICTION_EDGES[0] == -9e7
    h = _hist([-1e12, -0.5, 0.0, 1e-9, 0.75, 0.8, 1e12])
    assert sum(h.values()) == 7 and min(h) == 0 and max(h) == len(PREDICTION_EDGES)
    assert h[PREDICTION_EDGES.index(0.8)] == 2  # (0.7, 0.8] holds both


def test_replica_figures_add_and_subtract_their_prediction_bins():
    a = RequestCounts(requests=2, predictions={3: 2})
    b = RequestCounts(requests=3, predictions={3: 1, 9: 2})
    assert (a + b).predictions == {3: 3, 9: 2}
    assert ((a + b) - a).predictions == {3: 1, 9: 2}
    assert (a - b).predictions == {3: 1}  # never negative, empty bins left out


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(7)
    reference = _hist(rng.normal(200, 30, 20_000))
    values = [psi(reference, _hist(rng.normal(200 + shift, 30, 5_000))) for shift in (0, 10, 30, 60)]
    assert values[0] < 0.02
    assert values == sorted(values) and values[2] > 0.25 and values[3] > 1.0


def test_psi_matches_the_textbook_formula_on_decile_groups():
    reference = {i: 10 for i in range(10)}  # ten bins of equal mass: the groups are the bins
    live = {0: 30, 1: 20, **{i: 50 / 8 for i in range(2, 10)}}
    expected = sum((a / 100 - 0.1) * math.log((a / 100) / 0.1) for a in [30, 20] + [50 / 8] * 8)
    assert psi(reference, live) == pytest.approx(expected, abs=1e-6)


def test_groups_hold_about_a_tenth_of_the_holdout_each_and_never_split_a_bin():
    reference = {i: 1 for i in range(100)}
    assert group_cuts(reference) == [9, 19, 29, 39, 49, 59, 69, 79, 89]
    assert group_cuts({5: 100}) == []  # one bin: one group, PSI then only sees live mass moving out of it
    assert psi({5: 100}, {5: 10}) == 0.0 and psi({5: 100}, {40: 10}) == 0.0  # every live bin falls in the group


def test_live_bins_the_holdout_never_saw_count_against_the_edge_groups():
    reference = _hist(np.linspace(10, 20, 1000))  # bins (9, 10], (10, 15], (15, 20]: three groups
    assert psi(reference, _hist([1000.0] * 100)) > 4  # everything lands in the top group, which holds half
    assert psi(reference, _hist([-5.0] * 100)) > 4  # or in the bottom one, which holds a thousandth


def test_no_psi_without_data_or_for_a_classifier():
    assert psi({}, {1: 1}) is None and psi({1: 1}, {}) is None
    regression = scores_table("rmse", [1.0, 2.0, 3.0], [1.2, 2.1, 2.9], None, {})
    assert sum(holdout_histogram(regression).values()) == 3
    classifier = scores_table("auc", ["n", "y", "y"], [0.2, 0.9, 0.4], None, {}, challenger_label=[0, 1, 1])
    assert holdout_histogram(classifier) is None
    assert prediction_histogram(["y", "n"]) == {} and prediction_histogram([[0.1, 0.9]]) == {}
