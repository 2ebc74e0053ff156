# Alembic migrations of the store: one revision per schema change, SQLite and PostgreSQL.
"""Schema migrations, run by ``gatewayctl init`` through ``gateway.store.engine.migrate``."""
