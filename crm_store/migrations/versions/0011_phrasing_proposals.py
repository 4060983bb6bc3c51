"""Phrasing proposals: customers' questions proposed as alternative questions of the KB articles that answered
them, reviewed by a supervisor

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_store.coltypes

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('kb_phrasing_proposals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('source', sa.Enum('assist', 'link', 'feedback', name='proposalsource', native_enum=False, create_constraint=False, length=32), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('pending', 'accepted', 'rejected', name='proposalstatus', native_enum=False, create_constraint=False, length=32), nullable=False),
    sa.Column('proposed_by_agent_id', sa.Integer(), nullable=True),
    sa.Column('decided_by_agent_id', sa.Integer(), nullable=True),
    sa.Column('created_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['article_id'], ['kb_articles.id'], name=op.f('fk_kb_phrasing_proposals_article_id_kb_articles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_kb_phrasing_proposals_conversation_id_conversations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['decided_by_agent_id'], ['agents.id'], name=op.f('fk_kb_phrasing_proposals_decided_by_agent_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_kb_phrasing_proposals_message_id_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['proposed_by_agent_id'], ['agents.id'], name=op.f('fk_kb_phrasing_proposals_proposed_by_agent_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_phrasing_proposals'))
    )
    with op.batch_alter_table('kb_phrasing_proposals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kb_phrasing_proposals_article_id'), ['article_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_kb_phrasing_proposals_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_kb_phrasing_proposals_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_kb_phrasing_proposals_status_language', ['status', 'language'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('kb_phrasing_proposals', schema=None) as batch_op:
        batch_op.drop_index('ix_kb_phrasing_proposals_status_language')
        batch_op.drop_index(batch_op.f('ix_kb_phrasing_proposals_message_id'))
        batch_op.drop_index(batch_op.f('ix_kb_phrasing_proposals_conversation_id'))
        batch_op.drop_index(batch_op.f('ix_kb_phrasing_proposals_article_id'))

    op.drop_table('kb_phrasing_proposals')
