"""Alembic environment: runs migrations on the connection the zoo hands over.

The zoo calls ``alembic upgrade`` inside its own write transaction (see
``zoo.catalog.sync``), so migrations never open a connection of their own.
To write a new migration against a scratch database::

    alembic -x url=sqlite:///scratch.db -c zoo/catalog/migrations/alembic.ini revision --autogenerate -m "..."
"""

from alembic import context
from sqlalchemy import create_engine

from zoo.catalog.tables import in_metadata, metadata

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, include_name=in_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:  # developer use from the alembic command line
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///scratch.db")
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True, include_name=in_metadata)
        with context.begin_transaction():
            context.run_migrations()
