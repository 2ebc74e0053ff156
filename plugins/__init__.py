# Plugin hook API (on_accept, on_route, on_outcome) and built-in plugins: arrives with issue 5.
"""Plugins of the gateway."""
