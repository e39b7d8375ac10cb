"""served_features: each patient a tabular prediction scored (encoded feature vector, outputs, outcome later).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served_features",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("prediction_id", sa.String(32), nullable=False),
        sa.Column("patient_index", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("outcome_at", sa.String(40), nullable=True),
        sa.Column("outcome_actor", sa.String(64), nullable=True),
        sa.UniqueConstraint("prediction_id", "patient_index", name="uq_served_features_prediction_index"),
    )
    op.create_index("ix_served_features_model_created", "served_features", ["model", "created_at"])
    op.create_index("ix_served_features_created", "served_features", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_served_features_created", table_name="served_features")
    op.drop_index("ix_served_features_model_created", table_name="served_features")
    op.drop_table("served_features")
