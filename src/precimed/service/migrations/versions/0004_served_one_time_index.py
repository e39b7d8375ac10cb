"""served_features: drop the index on created_at alone; (model, created_at) serves every query.

Each stored prediction wrote a page of every index of served_features; the retention purge, the only query on
created_at alone, now deletes model by model through (model, created_at) (`precimed.service.served.purge`), so
the second index cost a page per commit and served nothing.

Revision ID: 0004_served_one_time_index
Revises: 0003_web_sessions
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0004_served_one_time_index"
down_revision = "0003_web_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_served_features_created", table_name="served_features")


def downgrade() -> None:
    op.create_index("ix_served_features_created", "served_features", ["created_at"])
