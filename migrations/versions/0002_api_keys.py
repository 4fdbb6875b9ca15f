"""api_keys: tenants' API keys as salted scrypt hashes (issue 6)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 05:40:00

A database made by ``create_all`` of a newer release already has the table (env.py stamps such a database at
0001); then this revision only records itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.database

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('api_keys'):
        return
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=128), nullable=False),
    sa.Column('created_at', service.database.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', service.database.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_owner'), ['owner'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_owner'))
    op.drop_table('api_keys')
