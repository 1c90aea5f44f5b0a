"""The run record of a published version (its lineage: base weights, data, recipe, versions, metrics per
epoch; `zoo.publish.publish_weights`' ``run``). Versions published before have none.

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('published_weights', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('published_weights', schema=None) as batch_op:
        batch_op.drop_column('run')
