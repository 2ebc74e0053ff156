# Provisioning: validating, storing and auditing what admins configure.
"""Provisioned objects and the operations on them."""
