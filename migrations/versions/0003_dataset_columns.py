"""datasets.columns, datasets.n_dropped: the per-column profile of tabular uploads (issue 12)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 16:10:00

A database made by ``create_all`` of a newer release already has the columns; then this revision only records
itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns('datasets')}
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        if 'columns' not in have:
            batch_op.add_column(sa.Column('columns', sa.JSON(), nullable=True))
        if 'n_dropped' not in have:
            batch_op.add_column(sa.Column('n_dropped', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('n_dropped')
        batch_op.drop_column('columns')
