"""Conformance suites that every implementation of an extension point runs."""
