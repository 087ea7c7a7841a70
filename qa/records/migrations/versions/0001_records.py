"""Records of questions, feedback and clicks; the settings table (the pseudonyms' salt).

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qa_questions",
        sa.Column("answer_id", sa.String(32), primary_key=True),
        sa.Column("asked_at", sa.DateTime(), nullable=False),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("entry_id", sa.String(64), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("alternatives", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("asker", sa.String(64), nullable=True),
    )
    op.create_index("ix_qa_questions_asked_at", "qa_questions", ["asked_at"])
    op.create_index("ix_qa_questions_entry_id", "qa_questions", ["entry_id"])
    op.create_table(
        "qa_feedback",
        sa.Column("answer_id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("helpful", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("surface", sa.String(16), nullable=False),
    )
    op.create_index("ix_qa_feedback_created_at", "qa_feedback", ["created_at"])
    op.create_table(
        "qa_clicks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("clicked_at", sa.DateTime(), nullable=False),
        sa.Column("answer_id", sa.String(32), nullable=False),
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("next_answer_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_qa_clicks_clicked_at", "qa_clicks", ["clicked_at"])
    op.create_index("ix_qa_clicks_answer_id", "qa_clicks", ["answer_id"])
    op.create_table(
        "qa_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("qa_settings")
    op.drop_index("ix_qa_clicks_answer_id", table_name="qa_clicks")
    op.drop_index("ix_qa_clicks_clicked_at", table_name="qa_clicks")
    op.drop_table("qa_clicks")
    op.drop_index("ix_qa_feedback_created_at", table_name="qa_feedback")
    op.drop_table("qa_feedback")
    op.drop_index("ix_qa_questions_entry_id", table_name="qa_questions")
    op.drop_index("ix_qa_questions_asked_at", table_name="qa_questions")
    op.drop_table("qa_questions")
