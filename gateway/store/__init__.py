# The store: tables, column types, engines and migrations entry points.
"""Persistence of the gateway."""
