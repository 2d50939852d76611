"""Validation: the gate between a sweep's winner and traffic."""

from streamtune.validation.gate import GateReport, MetricGate, Validator
from streamtune.validation.metrics import METRICS, get_metric

__all__ = ["METRICS", "GateReport", "MetricGate", "Validator", "get_metric"]
