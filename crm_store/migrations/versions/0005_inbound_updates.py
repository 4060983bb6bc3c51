"""Inbound updates: a channel's raw updates, stored before they are acknowledged

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm_store.coltypes

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('inbound_updates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('bot_id', sa.String(length=64), nullable=False),
    sa.Column('update_id', sa.BigInteger(), nullable=False),
    sa.Column('chat_id', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column('handled_at', crm_store.coltypes.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_updates')),
    sa.UniqueConstraint('channel', 'bot_id', 'update_id', name=op.f('uq_inbound_updates_channel_bot_id_update_id'))
    )
    op.create_index('ix_inbound_updates_unhandled', 'inbound_updates', ['received_at'], unique=False,
                    postgresql_where=sa.text('handled_at IS NULL'), sqlite_where=sa.text('handled_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_inbound_updates_unhandled', table_name='inbound_updates',
                  postgresql_where=sa.text('handled_at IS NULL'), sqlite_where=sa.text('handled_at IS NULL'))
    op.drop_table('inbound_updates')
