"""Alembic environment: the connection comes from reflow.db.migrate."""

from __future__ import annotations

import importlib
import pkgutil

from alembic import context

import reflow.db
from reflow.db.tables import Base

# Areas keep their ORM classes in reflow/db/tables*.py; all share Base.metadata.
for module in pkgutil.iter_modules(reflow.db.__path__):
    if module.name.startswith("tables"):
        importlib.import_module(f"reflow.db.{module.name}")

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
