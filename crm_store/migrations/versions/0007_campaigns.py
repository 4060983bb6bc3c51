"""Campaigns: a survey, a course invitation or a message sent to a segment, and its recipients

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 17:38:59
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_store.coltypes

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('nps', 'csat', 'course', 'message', name='campaignkind', native_enum=False, length=32), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=True),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('survey_id', sa.Integer(), nullable=True),
    sa.Column('course_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.JSON(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('quiet_start', sa.Integer(), nullable=True),
    sa.Column('quiet_end', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('per_second', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('draft', 'running', 'paused', 'finished', 'cancelled', name='campaignstatus', native_enum=False, length=32), nullable=False),
    sa.Column('cursor', sa.Integer(), nullable=False),
    sa.Column('next_batch_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by_agent_id', sa.Integer(), nullable=True),
    sa.Column('launched_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_campaigns_course_id_courses'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['created_by_agent_id'], ['agents.id'], name=op.f('fk_campaigns_created_by_agent_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], name=op.f('fk_campaigns_segment_id_segments'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['survey_id'], ['surveys.id'], name=op.f('fk_campaigns_survey_id_surveys'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('key', name=op.f('uq_campaigns_key')),
    sa.UniqueConstraint('name', name=op.f('uq_campaigns_name'))
    )
    op.create_table('campaign_recipients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'no_chat', 'opted_out', name='recipientstatus', native_enum=False, length=32), nullable=False),
    sa.Column('channel', sa.Enum('telegram', 'webchat', 'email', 'import', name='channel', native_enum=False, length=32), nullable=True),
    sa.Column('invitation_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('created_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_recipients_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_campaign_recipients_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['invitation_id'], ['survey_invitations.id'], name=op.f('fk_campaign_recipients_invitation_id_survey_invitations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_campaign_recipients_message_id_messages'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_recipients')),
    sa.UniqueConstraint('campaign_id', 'customer_id', name=op.f('uq_campaign_recipients_campaign_id_customer_id'))
    )
    with op.batch_alter_table('campaign_recipients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_recipients_customer_id'), ['customer_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('campaign_recipients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaign_recipients_customer_id'))

    op.drop_table('campaign_recipients')
    op.drop_table('campaigns')
