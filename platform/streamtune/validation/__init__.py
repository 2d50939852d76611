"""Validation: the gate between a sweep's winner and traffic."""

from streamtune.validation.bootstrap import BootstrapCI, paired_bootstrap
from streamtune.validation.gate import GateCheck, GateEvidence, GateReport, MetricGate, SliceReport, Validator
from streamtune.validation.holdout import HOLDOUT_SCORES, PairedRows, scores_table
from streamtune.validation.metrics import METRICS, get_metric

__all__ = [
    "HOLDOUT_SCORES",
    "METRICS",
    "BootstrapCI",
    "GateCheck",
    "GateEvidence",
    "GateReport",
    "MetricGate",
    "PairedRows",
    "SliceReport",
    "Validator",
    "get_metric",
    "paired_bootstrap",
    "scores_table",
]
