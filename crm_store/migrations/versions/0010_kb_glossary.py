"""Knowledge-base glossary: domain terms and their synonyms, per language, edited by admins

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_store.coltypes

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('kb_glossary_terms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('term', sa.String(length=40), nullable=False),
    sa.Column('synonyms', sa.JSON(), nullable=False),
    sa.Column('updated_by_agent_id', sa.Integer(), nullable=True),
    sa.Column('created_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['updated_by_agent_id'], ['agents.id'], name=op.f('fk_kb_glossary_terms_updated_by_agent_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kb_glossary_terms')),
    sa.UniqueConstraint('language', 'term', name=op.f('uq_kb_glossary_terms_language_term'))
    )


def downgrade() -> None:
    op.drop_table('kb_glossary_terms')
