# Error types that carry their answer: a config error names its file and key, a bad
# provisioning value names its field, and later protocol errors carry their wire status.
"""Errors of the gateway, each knowing how it is answered (docs/architecture.md rule 4)."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A bad configuration value: answered as ``file: key: reason`` and a non-zero exit."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        super().__init__(f"{file}: {key}: {reason}" if key else f"{file}: {reason}")


class InvalidInput(GatewayError):
    """A bad value given by an admin or a provisioning file: answered as ``field: reason``."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")

    def under(self, prefix: str) -> InvalidInput:
        """The same error located inside a larger document (``accounts[2]`` + ``.did``)."""
        return InvalidInput(f"{prefix}.{self.field}" if self.field else prefix, self.reason)


class Conflict(GatewayError):
    """A change that clashes with what is stored (duplicate key, object still in use)."""


class NotFound(GatewayError):
    """A named object that does not exist."""
