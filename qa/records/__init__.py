"""Records of the questions asked on every surface, their feedback, and the clicks on alternatives.

- :mod:`qa.records.schema` the tables; :mod:`qa.records.db` the engine, the migrations and the salt;
- :mod:`qa.records.privacy` redaction and pseudonyms;
- :mod:`qa.records.recorder` the writer (a bounded queue and one background thread).

``qa report`` and ``GET /admin/report`` read them (:mod:`qa.report`).
"""

from __future__ import annotations

from qa.records.db import database_url, make_engine, upgrade
from qa.records.privacy import pseudonym, redact
from qa.records.recorder import Recorder, RecorderHooks, RecordsUnavailable, UnknownAnswer

__all__ = ["Recorder", "RecorderHooks", "RecordsUnavailable", "UnknownAnswer", "database_url", "make_engine",
           "pseudonym", "redact", "upgrade"]
