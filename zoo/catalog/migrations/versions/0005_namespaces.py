"""Plugin namespaces and catalogs that merge: per-plugin fingerprints, preferred names,
builder arguments, input sizes, shared category lists and failed models.

The tables whose rows come from the plugins (plugins, models, weights, metrics,
catalog_state) are dropped and made anew with the new schema: the sync that runs
this migration refills them. The kept tables (weight_files, exports) keep their rows.

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: The tables of 0004 whose rows the plugins give, dependants first.
DERIVED_0004 = ('metrics', 'weights', 'models', 'plugins', 'catalog_state')
#: The same tables in this revision, with the new ones, dependants first.
DERIVED_0005 = ('metrics', 'weights', 'models', 'model_failures', 'plugins', 'category_lists', 'catalog_state')


def upgrade() -> None:
    for table in DERIVED_0004:
        op.drop_table(table)
    op.create_table('catalog_state',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('category_lists',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    op.create_table('plugins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('namespace', sa.String(length=200), nullable=False),
    sa.Column('target', sa.String(length=400), nullable=False),
    sa.Column('distribution', sa.String(length=200), nullable=True),
    sa.Column('version', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'distribution'),
    sa.UniqueConstraint('namespace')
    )
    op.create_table('model_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plugin_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('traceback', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['plugin_id'], ['plugins.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_failures_plugin_id'), ['plugin_id'], unique=False)

    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('plugin_id', sa.Integer(), nullable=False),
    sa.Column('preferred', sa.Boolean(), nullable=False),
    sa.Column('task', sa.String(length=100), nullable=False),
    sa.Column('builder', sa.String(length=400), nullable=False),
    sa.Column('weights_enum', sa.String(length=400), nullable=True),
    sa.Column('num_params', sa.BigInteger(), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('classifier', sa.JSON(), nullable=False),
    sa.Column('first_conv', sa.String(length=200), nullable=True),
    sa.Column('builder_args', sa.JSON(), nullable=False),
    sa.Column('input_size', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['plugin_id'], ['plugins.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plugin_id', 'name')
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_plugin_id'), ['plugin_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_task'), ['task'], unique=False)

    op.create_table('weights',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('enum_name', sa.String(length=200), nullable=True),
    sa.Column('member_name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('file_size', sa.BigInteger(), nullable=True),
    sa.Column('transforms', sa.JSON(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('builder_args', sa.JSON(), nullable=False),
    sa.Column('task', sa.String(length=100), nullable=True),
    sa.Column('categories_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['categories_id'], ['category_lists.id'], ),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_id', 'member_name')
    )
    with op.batch_alter_table('weights', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_weights_categories_id'), ['categories_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_weights_enum_name'), ['enum_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_weights_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_weights_task'), ['task'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('weights_id', sa.Integer(), nullable=False),
    sa.Column('dataset', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['weights_id'], ['weights.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_name_value', ['name', 'value'], unique=False)
        batch_op.create_index(batch_op.f('ix_metrics_weights_id'), ['weights_id'], unique=False)


def downgrade() -> None:
    for table in DERIVED_0005:
        op.drop_table(table)
    op.create_table('catalog_state',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('plugins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('target', sa.String(length=400), nullable=False),
    sa.Column('distribution', sa.String(length=200), nullable=True),
    sa.Column('version', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('plugin_id', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=100), nullable=False),
    sa.Column('builder', sa.String(length=400), nullable=False),
    sa.Column('weights_enum', sa.String(length=400), nullable=True),
    sa.Column('num_params', sa.BigInteger(), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('classifier', sa.JSON(), nullable=False),
    sa.Column('first_conv', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['plugin_id'], ['plugins.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_plugin_id'), ['plugin_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_task'), ['task'], unique=False)

    op.create_table('weights',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('enum_name', sa.String(length=200), nullable=False),
    sa.Column('member_name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('file_size', sa.BigInteger(), nullable=True),
    sa.Column('transforms', sa.JSON(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_id', 'member_name')
    )
    with op.batch_alter_table('weights', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_weights_enum_name'), ['enum_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_weights_model_id'), ['model_id'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('weights_id', sa.Integer(), nullable=False),
    sa.Column('dataset', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['weights_id'], ['weights.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_name_value', ['name', 'value'], unique=False)
        batch_op.create_index(batch_op.f('ix_metrics_weights_id'), ['weights_id'], unique=False)
