"""Published weights (versions and aliases), published exports and the service's tokens.

New tables only: rows that publishing and ``zoo token`` write, which no plugin
gives, so syncs and prunes keep them.

Revision ID: 0006
Revises: 0005
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('published_weights',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('preprocessing', sa.JSON(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('from_weights', sa.String(length=400), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('namespace', 'name', 'version')
    )
    with op.batch_alter_table('published_weights', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_published_weights_model'), ['model'], unique=False)

    op.create_table('weight_aliases',
    sa.Column('namespace', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('alias', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('namespace', 'name', 'alias')
    )
    op.create_table('published_exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('weights', sa.String(length=400), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    with op.batch_alter_table('published_exports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_published_exports_model'), ['model'], unique=False)

    op.create_table('tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash'),
    sa.UniqueConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('tokens')
    with op.batch_alter_table('published_exports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_published_exports_model'))
    op.drop_table('published_exports')
    op.drop_table('weight_aliases')
    with op.batch_alter_table('published_weights', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_published_weights_model'))
    op.drop_table('published_weights')
