"""The records' tables (SQLAlchemy Core). The migrations in ``migrations/versions`` create them;
this module is what the code reads and writes, and a test checks that the two agree.

Every time is UTC, stored without a zone. Nothing here holds a raw identity: ``asker`` is a salted
hash (see :func:`qa.records.privacy.pseudonym`), and questions and comments are redacted.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

VERSION_TABLE = "qa_alembic_version"  # prefixed, so the records can share a database with other apps

# One row a question asked on any surface.
questions = sa.Table(
    "qa_questions", metadata,
    sa.Column("answer_id", sa.String(32), primary_key=True),  # Answer.answer_id
    sa.Column("asked_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("surface", sa.String(16), nullable=False),  # api, page, slack, cli
    sa.Column("question", sa.Text(), nullable=False),  # as asked, secrets and e-mail addresses redacted
    sa.Column("language", sa.String(8), nullable=False),  # zh, en, mixed
    sa.Column("entry_id", sa.String(64), nullable=True, index=True),  # the match; null: refused
    sa.Column("confidence", sa.Float(), nullable=False),  # the best candidate's, matched or not
    sa.Column("score", sa.Float(), nullable=False),  # the best candidate's fused score
    sa.Column("alternatives", sa.Text(), nullable=False),  # JSON list of the entry ids shown as alternatives
    sa.Column("latency_ms", sa.Float(), nullable=False),  # the engine's time (Answer.took_ms)
    sa.Column("asker", sa.String(64), nullable=True),  # salted hash of the Slack team+user or client address
)

# At most one feedback an answer: a second one replaces the first (a comment is kept unless replaced).
feedback = sa.Table(
    "qa_feedback", metadata,
    sa.Column("answer_id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Column("helpful", sa.Boolean(), nullable=False),
    sa.Column("comment", sa.Text(), nullable=True),  # redacted like questions
    sa.Column("surface", sa.String(16), nullable=False),
)

# "An alternative was clicked after question X".
clicks = sa.Table(
    "qa_clicks", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("clicked_at", sa.DateTime(), nullable=False, index=True),
    sa.Column("answer_id", sa.String(32), nullable=False, index=True),  # the answer whose alternative was clicked
    sa.Column("entry_id", sa.String(64), nullable=False),  # the alternative clicked
    sa.Column("surface", sa.String(16), nullable=False),
    sa.Column("next_answer_id", sa.String(32), nullable=True),  # the answer the click led to, when known
)

# Key-value state shared by the replicas on one database (the pseudonyms' salt).
state = sa.Table(
    "qa_settings", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)
