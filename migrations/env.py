# Alembic environment: runs revisions on the connection gateway.store.engine hands in.
"""Online migrations only; batch mode so ALTERs work on SQLite as on PostgreSQL."""

from alembic import context

from gateway.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'gatewayctl init', which passes the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
