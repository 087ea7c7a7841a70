"""Domain exceptions raised by the library; each surface translates them at its edge."""

from __future__ import annotations

from collections.abc import Sequence


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


class BuildRefused(QAError):
    """The data has problems (parse warnings) and a good index exists: it is kept, not replaced."""

    def __init__(self, warnings: Sequence[object], kept: str) -> None:
        self.warnings = list(warnings)
        shown = "; ".join(str(w) for w in self.warnings[:5])
        more = f" (and {len(self.warnings) - 5} more)" if len(self.warnings) > 5 else ""
        super().__init__(f"{len(self.warnings)} problem(s) in the FAQ or data files, so {kept}: {shown}{more}")


class UnknownEntry(QAError, KeyError):
    """An entry id that the knowledge base does not hold."""
