"""Where each model's output layers and first convolution are, for head and stem surgery.

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # The catalog's rows are rewritten by the sync that runs this migration, so the
    # new NOT NULL column can start from an empty list.
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('classifier', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('first_conv', sa.String(length=200), nullable=True))
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.alter_column('classifier', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('first_conv')
        batch_op.drop_column('classifier')
