"""Alembic environment: the URL comes from the caller (`fraudloop.storage.migrate`)."""

from alembic import context
from sqlalchemy import create_engine

from fraudloop.storage import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or "sqlite://"
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
