"""The knowledge base: FAQ entries plus the maintainer's data files.

A data folder holds::

    faq/*.md              the FAQ itself
    alternates.yaml       id → extra phrasings of the question (any language)
    translations.yaml     id → {question, answer}: the entry in another language (searched, not shown)
    out_of_scope.yaml     known gaps: topics with example questions the FAQ does not answer
    glossary.tsv          bilingual synonym groups for the lexical side
    terms.txt             domain terms jieba must keep whole
    common_names.txt      Kubernetes' own CamelCase names, which do not point at an uncovered feature

Only the FAQ is required; each other file adds a lever.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qa.faq import Entry, ParseWarning, load_faq
from qa.index import Passage
from qa.segment import Glossary, Segmenter, read_terms

log = logging.getLogger(__name__)

ALTERNATES = "alternates.yaml"
TRANSLATIONS = "translations.yaml"
OUT_OF_SCOPE = "out_of_scope.yaml"
GLOSSARY = "glossary.tsv"
TERMS = "terms.txt"
COMMON_NAMES = "common_names.txt"


@dataclass
class KnowledgeBase:
    """Everything the engine searches, loaded from files."""

    entries: list[Entry]
    alternates: dict[str, list[str]] = field(default_factory=dict)
    translations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    out_of_scope: dict[str, list[str]] = field(default_factory=dict)
    glossary: Glossary = field(default_factory=Glossary)
    terms: list[str] = field(default_factory=list)
    common_names: list[str] = field(default_factory=list)
    warnings: list[ParseWarning] = field(default_factory=list)
    data_hash: str = ""

    def __post_init__(self) -> None:
        self.by_id = {e.id: e for e in self.entries}
        self._segmenter: Segmenter | None = None

    @classmethod
    def load(cls, data_dir: Path, faq_dir: Path | None = None) -> KnowledgeBase:
        """Loads the FAQ and the optional data files.

        Args:
            data_dir: the data folder (alternates, glossary, …).
            faq_dir: where the FAQ markdown lives (default: ``data_dir/faq``).

        Returns:
            The knowledge base, with a hash of every source file.

        Raises:
            FAQError: when no FAQ entry could be loaded.
        """
        data_dir = Path(data_dir)
        faq_dir = Path(faq_dir) if faq_dir else data_dir / "faq"
        parsed = load_faq([faq_dir])
        warnings = list(parsed.warnings)
        ids = {e.id for e in parsed.entries}
        alternates = _read_mapping(data_dir / ALTERNATES, warnings)
        for key in list(alternates):
            if key not in ids:
                warnings.append(ParseWarning(ALTERNATES, 0, f"alternates for unknown entry id {key!r} ignored"))
                log.warning("%s: alternates for unknown entry id %r ignored", ALTERNATES, key)
                del alternates[key]
        translations: dict[str, list[tuple[str, str]]] = {}
        raw_tr = _read_yaml(data_dir / TRANSLATIONS, warnings)
        for key, value in (raw_tr.items() if isinstance(raw_tr, dict) else []):
            if str(key) not in ids:
                warnings.append(ParseWarning(TRANSLATIONS, 0, f"translation of unknown entry id {key!r} ignored"))
            elif isinstance(value, dict) and str(value.get("question", "")).strip():
                translations.setdefault(str(key), []).append((str(value["question"]), str(value.get("answer", ""))))
        oos: dict[str, list[str]] = {}
        raw = _read_yaml(data_dir / OUT_OF_SCOPE, warnings) or []
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict) and item.get("topic") and isinstance(item.get("examples"), list):
                oos[str(item["topic"])] = [str(x) for x in item["examples"] if str(x).strip()]
        files = sorted(faq_dir.rglob("*.md")) + [data_dir / n for n in (ALTERNATES, TRANSLATIONS, OUT_OF_SCOPE,
                                                                        GLOSSARY, TERMS, COMMON_NAMES)]
        glossary = Glossary()
        try:
            glossary = Glossary.load(data_dir / GLOSSARY)
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(ParseWarning(GLOSSARY, 0, f"cannot read, ignored: {exc.__class__.__name__}: {exc}"))
        return cls(entries=parsed.entries, alternates=alternates, translations=translations, out_of_scope=oos,
                   glossary=glossary, terms=_read_list(data_dir / TERMS, warnings),
                   common_names=_read_list(data_dir / COMMON_NAMES, warnings),
                   warnings=warnings, data_hash=hash_files(files))

    def segmenter(self) -> Segmenter:
        """The segmenter with this knowledge base's dictionary and glossary (built once)."""
        if self._segmenter is None:
            self._segmenter = Segmenter(terms=self.terms, glossary=self.glossary)
        return self._segmenter

    def passages(self) -> list[Passage]:
        """The texts the dense index encodes, in a stable order."""
        out: list[Passage] = []
        for e in self.entries:
            out.append(Passage(e.id, "question", e.question))
            out.extend(Passage(e.id, "alternate", a) for a in self.alternates.get(e.id, []))
            out.append(Passage(e.id, "answer", f"{e.question}\n{e.answer}"))
            for question, answer in self.translations.get(e.id, []):
                out.append(Passage(e.id, "alternate", question))
                out.append(Passage(e.id, "answer", f"{question}\n{answer}"))
        for topic, examples in self.out_of_scope.items():
            out.extend(Passage(f"oos:{topic}", "oos", x) for x in examples)
        return out

    def lexical_document(self, entry: Entry) -> str:
        """The text BM25 sees: question (twice, it is the best field), alternates, answer, translations."""
        translated = [f"{q}\n{a}" for q, a in self.translations.get(entry.id, [])]
        return "\n".join([entry.question, entry.question, *self.alternates.get(entry.id, []), entry.answer,
                          *translated])


def hash_files(paths: list[Path]) -> str:
    """A hash over the names and contents of the files that exist among ``paths``."""
    h = hashlib.sha256()
    for p in paths:
        try:
            data = p.read_bytes() if p.is_file() else None
        except OSError:  # unreadable: load_faq already warned about it; hash what can be read
            data = None
        if data is not None:
            h.update(p.name.encode("utf-8") + b"\0")
            h.update(data)
            h.update(b"\0")
    return h.hexdigest()[:16]


def _read_list(path: Path, warnings: list[ParseWarning]) -> list[str]:
    """A one-item-a-line file (see :func:`read_terms`); empty, with a warning, when unreadable."""
    try:
        return read_terms(path)
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(ParseWarning(path.name, 0, f"cannot read, ignored: {exc.__class__.__name__}: {exc}"))
        return []


def _read_yaml(path: Path, warnings: list[ParseWarning]) -> object:
    if not path.exists():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
        warnings.append(ParseWarning(path.name, line, f"cannot parse: {exc.__class__.__name__}"))
        log.warning("%s:%d: cannot parse, ignored", path.name, line)
        return None


def _read_mapping(path: Path, warnings: list[ParseWarning]) -> dict[str, list[str]]:
    raw = _read_yaml(path, warnings)
    if not isinstance(raw, dict):
        return {}
    return {str(k): [str(x) for x in v if str(x).strip()] for k, v in raw.items() if isinstance(v, list)}
