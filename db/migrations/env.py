"""Alembic environment of the ``nas_`` tables (run by db.upgrade; never touches Optuna's tables).

Our version table is ``nas_alembic_version``: Optuna's own Alembic keeps ``alembic_version`` in
the same database.  The caller passes an open connection in ``config.attributes["connection"]``
and owns its transaction, so a whole upgrade commits or rolls back as one.
"""

from __future__ import annotations

from alembic import context

from db._models import Base
from db._schema import VERSION_TABLE, include_name

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("db migrations run through db.upgrade(url) (python -m nas db upgrade), "
                       "which passes a connection; offline (--sql) mode is not supported")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_name=include_name,
    render_as_batch=True,  # SQLite changes constraints by copying the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
