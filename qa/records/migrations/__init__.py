"""Alembic migrations of the records database, run programmatically (:func:`qa.records.db.upgrade`)."""
