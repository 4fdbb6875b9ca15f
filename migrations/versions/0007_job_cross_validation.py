"""jobs.cross_validation: the fold models' held-out metrics (issue 14)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:00:00

A database made by ``create_all`` of a newer release already has the column; then this revision only records
itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns('jobs')}
    if 'cross_validation' not in have:
        with op.batch_alter_table('jobs', schema=None) as batch_op:
            batch_op.add_column(sa.Column('cross_validation', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('cross_validation')
