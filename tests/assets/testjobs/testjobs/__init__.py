"""Tiny jobs for the serving tests; shipped to replicas through runtime_env py_modules."""
