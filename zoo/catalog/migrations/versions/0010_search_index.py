"""The full-text search index of the models (`zoo.catalog.search`): an FTS5 virtual table on SQLite, a table of
tsvectors with a GIN index on PostgreSQL, filled from the models already in the catalog (the sync remakes it
whenever it writes models, so a catalog whose plugins are not all installed here is searchable too).

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

from alembic import op

from zoo.catalog import search, tables


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    search.refresh(op.get_bind())


def downgrade() -> None:
    op.drop_table(tables.SEARCH_INDEX)
