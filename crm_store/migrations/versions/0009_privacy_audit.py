"""Privacy and audit: customers.erased_at, privacy_requests, and the append-only audit_log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_store.coltypes

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The audit log is append-only for everything that connects as the application: a trigger refuses UPDATE and
# DELETE of any row (a database owner can still drop the table; that is outside what Kefu can prevent).
POSTGRES_APPEND_ONLY = [
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP; END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]
SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END""",
]


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True))

    op.create_table('privacy_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.Enum('telegram', 'webchat', 'email', 'import', name='channel', native_enum=False, create_constraint=False, length=32), nullable=True),
    sa.Column('status', sa.Enum('pending', 'done', 'declined', name='privacyrequeststatus', native_enum=False, create_constraint=False, length=32), nullable=False),
    sa.Column('requested_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by_agent_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_privacy_requests_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resolved_by_agent_id'], ['agents.id'], name=op.f('fk_privacy_requests_resolved_by_agent_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_privacy_requests'))
    )
    with op.batch_alter_table('privacy_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_privacy_requests_customer_id'), ['customer_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.Enum('agent', 'api', 'customer', 'system', name='actor', native_enum=False, create_constraint=False, length=32), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('actor_label', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('subject_type', sa.String(length=30), nullable=True),
    sa.Column('subject_id', sa.String(length=100), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index('ix_audit_log_subject', ['subject_type', 'subject_id'], unique=False)
    for statement in POSTGRES_APPEND_ONLY if op.get_bind().dialect.name == 'postgresql' else SQLITE_APPEND_ONLY:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log')
        op.execute('DROP FUNCTION IF EXISTS audit_log_append_only()')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_subject')
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_agent_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')
    with op.batch_alter_table('privacy_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_privacy_requests_customer_id'))

    op.drop_table('privacy_requests')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
