"""The run's error when no trial of a sweep gives a model: it names the first failed trial's exception (no Ray)."""

import pytest

from streamtune.errors import SweepError
from streamtune.sweeps.failures import JobFailure
from streamtune.sweeps.runner import pick_best
from streamtune.sweeps.schema import TrialSummary


def _trial(n: int, error: str | None = None, **kw) -> TrialSummary:
    tid = f"5f1c2_{n:05d}"
    if error is not None:
        error = f"{error} (trial {tid} on node node{n}; see /runs/r-1/tune/{tid}/error.txt)"
    return TrialSummary(trial_id=tid, params={"num_leaves": 7}, error=error, **kw)


def _raised(trials, metric="rmse") -> SweepError:
    with pytest.raises(SweepError) as info:
        pick_best(trials, metric, "min")
    return info.value


def test_every_trial_failed_names_the_first_trials_exception_in_the_headline():
    trials = [  # in the order they were collected, not by id
        _trial(2, "ValueError: could not convert string to float: 'oslo'"),
        _trial(0, "DataError: Got only the class 'a' in label column \"y\" of the train split"),
        _trial(1, "ValueError: could not convert string to float: 'oslo'"),
        _trial(3, "ValueError: could not convert string to float: 'oslo'"),
    ]
    err = _raised(trials)
    assert err.headline == ("every trial of the sweep failed (4 of 4); the first (trial 5f1c2_00000) raised "
                            "DataError: Got only the class 'a' in label column \"y\" of the train split")
    assert err.fix is not None
    assert err.fix.startswith("trial 5f1c2_00000 ran on node node0; see /runs/r-1/tune/5f1c2_00000/error.txt")
    # the others are kept, once per distinct exception
    assert err.fix.count("could not convert string to float") == 1 and "2 more raised the same" in err.fix
    # what the controller records as the run's error (error.json's headline)
    headline = JobFailure.from_exception(err).headline
    assert headline.startswith("SweepError: every trial of the sweep failed (4 of 4); the first (trial "
                               "5f1c2_00000) raised DataError: Got only the class 'a'")


def test_some_trials_failed_and_the_rest_saved_nothing():
    err = _raised([_trial(0), _trial(1, "RuntimeError: out of memory")])
    assert err.headline == ("no trial of the sweep saved a model with metric 'rmse'; 1 of 2 trial(s) failed; the "
                            "first (trial 5f1c2_00001) raised RuntimeError: out of memory")


def test_an_error_not_in_the_summary_format_is_named_whole():
    err = _raised([TrialSummary(trial_id="t1", params={}, error="the actor died unexpectedly")])
    assert err.headline.endswith("the first (trial t1) raised the actor died unexpectedly") and err.fix is None


def test_a_long_list_of_other_errors_is_cut():
    trials = [_trial(i, f"ValueError: bad value {i} " + "x" * 100) for i in range(20)]
    err = _raised(trials)
    assert err.fix is not None and len(err.fix) <= 600 and err.fix.endswith("...")


def test_no_failure_but_no_model_says_so():
    err = _raised([_trial(0, iterations=3, metrics={"rmse": 2.0}), _trial(1)])
    assert err.headline == ("no trial of the sweep saved a model with metric 'rmse'; 2 trial(s) ended, without an "
                            "error and without saving")
    assert err.fix is not None and "ctx.save_model" in err.fix


def test_models_saved_without_the_metric_name_what_was_reported():
    trials = [_trial(0, metrics={"auc": 0.8, "training_iteration": 2, "time_total_s": 1.0}, artifact_uri="/m/0")]
    err = _raised(trials, metric="pr_auc")
    assert err.headline == ("no trial of the sweep reported metric 'pr_auc'; 1 of 1 trial(s) saved a model but "
                            "reported only ['auc']")


def test_no_trial_at_all():
    assert _raised([]).headline == "no trial of the sweep ran, so none saved a model with metric 'rmse'"


def test_the_best_is_still_picked_when_one_trial_saved_a_model():
    good = _trial(1, metrics={"rmse": 1.0}, artifact_uri="/m/1")
    better = _trial(2, metrics={"rmse": 0.5}, artifact_uri="/m/2")
    assert pick_best([_trial(0, "ValueError: x"), good, better], "rmse", "min") is better
    assert pick_best([good, better], "rmse", "max") is good
