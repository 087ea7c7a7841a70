"""Domain exceptions raised by the library; each surface translates them at its edge."""

from __future__ import annotations


class QAError(Exception):
    """Base class of every error the library raises on purpose."""


class InvalidQuestion(QAError):
    """The question is empty, blank, or otherwise unusable."""


class ModelLoadError(QAError):
    """The encoder could not be loaded (missing package, bad path, no weights)."""


class IndexCorrupt(QAError):
    """The on-disk index is missing, stale, truncated or corrupt."""


class FAQError(QAError):
    """No FAQ entry could be loaded from the configured sources."""


class UnknownEntry(QAError, KeyError):
    """An entry id that the knowledge base does not hold."""
