# SMPP 3.4: codec, session state machine, text and receipts, and the asyncio adapters.
"""SMPP 3.4 (SMPP Developers Forum, Issue 1.2) for the gateway."""
