"""sweeps, sweep_trials, jobs.sweep_id: hyper-parameter sweeps (issue 17)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 17:05:00

A database made by ``create_all`` of a newer release already has them; then this revision only records itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.database

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    if 'sweep_id' not in {c["name"] for c in insp.get_columns('jobs')}:
        with op.batch_alter_table('jobs', schema=None) as batch_op:
            batch_op.add_column(sa.Column('sweep_id', sa.String(length=32), nullable=True))
            batch_op.create_index('ix_jobs_sweep_id', ['sweep_id'], unique=False)
    tables = set(insp.get_table_names())
    if 'sweeps' not in tables:
        op.create_table(
            'sweeps',
            sa.Column('id', sa.String(length=32), nullable=False),
            sa.Column('owner', sa.String(length=64), nullable=False),
            sa.Column('name', sa.String(length=200), nullable=True),
            sa.Column('request', sa.JSON(), nullable=False),
            sa.Column('status', sa.String(length=16), nullable=False),
            sa.Column('reason', sa.Text(), nullable=True),
            sa.Column('best_trial', sa.Integer(), nullable=True),
            sa.Column('importances', sa.JSON(), nullable=True),
            sa.Column('lease_owner', sa.String(length=128), nullable=True),
            sa.Column('lease_expires', service.database.UTCDateTime(), nullable=True),
            sa.Column('created_at', service.database.UTCDateTime(), nullable=False),
            sa.Column('updated_at', service.database.UTCDateTime(), nullable=False),
            sa.Column('finished_at', service.database.UTCDateTime(), nullable=True),
            sa.PrimaryKeyConstraint('id'))
        op.create_index('ix_sweeps_owner', 'sweeps', ['owner'])
        op.create_index('ix_sweeps_status', 'sweeps', ['status'])
        op.create_index('ix_sweeps_created_at', 'sweeps', ['created_at'])
    if 'sweep_trials' not in tables:
        op.create_table(
            'sweep_trials',
            sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
            sa.Column('sweep_id', sa.String(length=32), nullable=False),
            sa.Column('owner', sa.String(length=64), nullable=False),
            sa.Column('number', sa.Integer(), nullable=False),
            sa.Column('params', sa.JSON(), nullable=False),
            sa.Column('status', sa.String(length=16), nullable=False),
            sa.Column('network_id', sa.String(length=32), nullable=True),
            sa.Column('job_id', sa.String(length=32), nullable=True),
            sa.Column('model_id', sa.String(length=32), nullable=True),
            sa.Column('value', sa.Float(), nullable=True),
            sa.Column('epoch', sa.Integer(), nullable=False),
            sa.Column('intermediate', sa.JSON(), nullable=False),
            sa.Column('error', sa.Text(), nullable=True),
            sa.Column('created_at', service.database.UTCDateTime(), nullable=False),
            sa.Column('finished_at', service.database.UTCDateTime(), nullable=True),
            sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('sweep_id', 'number', name='uq_sweep_trials_sweep_number'))
        op.create_index('ix_sweep_trials_sweep_id', 'sweep_trials', ['sweep_id'])
        op.create_index('ix_sweep_trials_owner', 'sweep_trials', ['owner'])
        op.create_index('ix_sweep_trials_job_id', 'sweep_trials', ['job_id'])


def downgrade() -> None:
    op.drop_table('sweep_trials')
    op.drop_table('sweeps')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_sweep_id')
        batch_op.drop_column('sweep_id')
