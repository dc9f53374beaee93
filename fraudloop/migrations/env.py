"""Alembic environment: the URL comes from the caller (`fraudloop.storage.migrate`)."""

from alembic import context

from fraudloop.storage import Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or "sqlite://"
# the store's own engine: a new SQLite file is switched to WAL here, once, and not by the first
# writers to connect (two processes doing that at the same moment got "database is locked")
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
