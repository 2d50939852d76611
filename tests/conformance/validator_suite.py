"""Conformance suite for ``Validator`` implementations: never raise, refuse what cannot be scored."""

from __future__ import annotations

from streamtune.validation.gate import GateEvidence, GateReport


def evidence(**kw) -> GateEvidence:
    base = dict(metric="rmse", mode="min", challenger=1.0, champion=None, holdout_rows=200, snapshot_rows=1000)
    return GateEvidence(**{**base, **kw})


class ValidatorConformance:
    """Subclass and provide a ``validator`` fixture."""

    def test_returns_a_report_with_reasons(self, validator):
        report = validator.validate(evidence())
        assert isinstance(report, GateReport) and report.reasons

    def test_refuses_a_challenger_that_could_not_be_scored(self, validator):
        for bad in (None, float("nan"), float("inf")):
            report = validator.validate(evidence(challenger=bad, error="boom"))
            assert report.passed is False

    def test_refuses_a_challenger_worse_than_the_champion(self, validator):
        assert not validator.validate(evidence(challenger=2.0, champion=1.0)).passed
        assert not validator.validate(evidence(mode="max", metric="accuracy", challenger=0.5, champion=0.9)).passed

    def test_failed_checks_come_first(self, validator):
        report = validator.validate(evidence(challenger=2.0, champion=1.0))
        assert "champion" in report.reasons[0]

    def test_refuses_a_challenger_when_the_champion_could_not_be_scored(self, validator):
        report = validator.validate(evidence(challenger=0.5, champion=None, champion_version=2,
                                             champion_error="KeyError: 'temp'"))
        assert report.passed is False and "KeyError: 'temp'" in report.reasons[0]
