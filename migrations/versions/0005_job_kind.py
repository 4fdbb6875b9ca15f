"""jobs.kind: 'train' (every job before it) or 'predict' (batch scoring of a stored data set, issue 15)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 17:20:00

A database made by ``create_all`` of a newer release already has the column; then this revision only records
itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns('jobs')}
    if 'kind' not in have:
        with op.batch_alter_table('jobs', schema=None) as batch_op:
            batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='train', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('kind')
