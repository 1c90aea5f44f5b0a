"""Who verified a published export: "registry" (verified again when published) or "claimed"
(only its publisher's record). Exports published before were never verified again: "claimed".

Revision ID: 0007
Revises: 0006
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('published_exports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verified_by', sa.String(length=20), nullable=False, server_default='claimed'))


def downgrade() -> None:
    with op.batch_alter_table('published_exports', schema=None) as batch_op:
        batch_op.drop_column('verified_by')
