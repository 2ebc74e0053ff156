# The running gateway: SMPP and SIP listeners, delivery pipeline, store and configuration.
"""SMPP/SIP messaging gateway."""

__version__ = "0.1.0"
