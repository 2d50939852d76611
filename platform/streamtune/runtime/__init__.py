"""Adapters that production code uses to reach the cluster: join Ray, start Serve's proxy, Kafka admin.

Nothing here starts a service of its own; the embedded local services live in :mod:`streamtune.embedded`.
"""
