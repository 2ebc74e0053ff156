# Billing: money, tariffs, CDR rating and settlement.
"""Carrier billing."""
