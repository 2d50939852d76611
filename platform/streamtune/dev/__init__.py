"""The demo and what only it uses: synthetic drifting sales data and an HTTP load generator.

Only the CLI imports this package; nothing in the platform depends on it.
"""
