"""The knowledge base: FAQ entries plus the maintainer's data files.

A data folder holds::

    faq/*.md              the FAQ itself
    alternates.yaml       id → extra phrasings of the question (any language)
    translations.yaml     id → {question, answer}: the entry in English (searched; shown to English askers)
    out_of_scope.yaml     known gaps: topics with example questions the FAQ does not answer
    glossary.tsv          bilingual synonym groups for the lexical side
    terms.txt             domain terms jieba must keep whole
    common_names.txt      Kubernetes' own CamelCase names, which do not point at an uncovered feature

Only the FAQ is required; each other file adds a lever.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from qa.contract import Entry, Translation, to_markdown
from qa.faq import ParseWarning, load_faq
from qa.index import Passage
from qa.markdown import split_parts
from qa.segment import Glossary, Segmenter, read_terms

log = logging.getLogger(__name__)

ALTERNATES = "alternates.yaml"
TRANSLATIONS = "translations.yaml"
OUT_OF_SCOPE = "out_of_scope.yaml"
GLOSSARY = "glossary.tsv"
TERMS = "terms.txt"
COMMON_NAMES = "common_names.txt"


NonBlank = Field(min_length=1, pattern=r"\S")


class _DataModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TranslationItem(_DataModel):
    """One entry of ``translations.yaml``: the entry's question and answer in English."""

    question: str = NonBlank
    answer: str = ""
    source_hash: str | None = None  # qa.lint.source_hash of the Chinese entry it was translated from


class KnownGap(_DataModel):
    """One item of ``out_of_scope.yaml``: a topic the FAQ does not answer, with example questions."""

    topic: str = NonBlank
    examples: list[str] = Field(min_length=1)


_ALTERNATES = TypeAdapter(list[str])


@dataclass
class KnowledgeBase:
    """Everything the engine searches, loaded from files."""

    entries: list[Entry]
    alternates: dict[str, list[str]] = field(default_factory=dict)
    translations: dict[str, Translation] = field(default_factory=dict)
    known_gaps: dict[str, list[str]] = field(default_factory=dict)
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

        A data file item that does not validate, or names an entry id that does not exist, is
        left out with a warning that gives its file and line; the other items still load.

        Raises:
            FAQError: when no FAQ entry could be loaded.
        """
        data_dir = Path(data_dir)
        faq_dir = Path(faq_dir) if faq_dir else data_dir / "faq"
        parsed = load_faq([faq_dir])
        warnings = list(parsed.warnings)
        ids = {e.id for e in parsed.entries}

        alternates: dict[str, list[str]] = {}
        for key, value in _items(data_dir / ALTERNATES, _ALTERNATES, warnings, ids):
            alternates[key] = [x.strip() for x in value if x.strip()]
        translations: dict[str, Translation] = {}
        for key, item in _items(data_dir / TRANSLATIONS, TypeAdapter(TranslationItem), warnings, ids):
            translations[key] = Translation(language="en", question=item.question, answer=split_parts(item.answer))
        known_gaps: dict[str, list[str]] = {}
        for _, item in _items(data_dir / OUT_OF_SCOPE, TypeAdapter(KnownGap), warnings):
            known_gaps[item.topic] = [x for x in (e.strip() for e in item.examples) if x]

        files = sorted(faq_dir.rglob("*.md")) + [data_dir / n for n in (ALTERNATES, TRANSLATIONS, OUT_OF_SCOPE,
                                                                        GLOSSARY, TERMS, COMMON_NAMES)]
        glossary = Glossary()
        try:
            glossary = Glossary.load(data_dir / GLOSSARY)
        except (OSError, UnicodeDecodeError) as exc:
            warnings.append(ParseWarning(GLOSSARY, 0, f"cannot read, ignored: {exc.__class__.__name__}: {exc}"))
        for w in warnings[len(parsed.warnings):]:
            log.warning("%s", w)
        return cls(entries=parsed.entries, alternates=alternates, translations=translations, known_gaps=known_gaps,
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
            out.append(Passage(e.id, "answer", f"{e.question}\n{e.markdown}"))
            if (t := self.translations.get(e.id)) is not None:
                out.append(Passage(e.id, "alternate", t.question))
                out.append(Passage(e.id, "answer", f"{t.question}\n{to_markdown(t.answer)}"))
        for topic, examples in self.known_gaps.items():
            out.extend(Passage(f"gap:{topic}", "known_gap", x) for x in examples)
        return out

    def lexical_document(self, entry: Entry) -> str:
        """The text BM25 sees: question (twice, it is the best field), alternates, answer, translation."""
        t = self.translations.get(entry.id)
        translated = [f"{t.question}\n{to_markdown(t.answer)}"] if t else []
        return "\n".join([entry.question, entry.question, *self.alternates.get(entry.id, []), entry.markdown,
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


def _read_yaml(path: Path, warnings: list[ParseWarning]) -> tuple[Any, yaml.Node | None]:
    """The file's data and its YAML node tree (for line numbers); (None, None) when absent or broken."""
    if not path.exists():
        return None, None
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
        warnings.append(ParseWarning(path.name, line, f"cannot parse: {exc.__class__.__name__}"))
        return None, None


def _line(node: yaml.Node | None, loc: tuple[Any, ...] = (), key: bool = False) -> int:
    """The 1-based line of the value at ``loc`` (keys and indexes) in a YAML node tree; with
    ``key``, of the last key itself."""
    if node is None:
        return 0
    for n, step in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            found = None if pair is None else pair[0] if key and n == len(loc) - 1 else pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            found = node.value[step]
        else:
            found = None
        if found is None:
            break
        node = found
    return node.start_mark.line + 1


def _invalid(path: Path, node: yaml.Node | None, loc: tuple[Any, ...], exc: ValidationError) -> ParseWarning:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return ParseWarning(path.name, _line(node, loc + tuple(err["loc"])),
                        f"{'.'.join(map(str, loc))}{'.' + where if where else ''}: {err['msg']}; ignored")


def _items(path: Path, adapter: TypeAdapter[Any], warnings: list[ParseWarning],
           ids: set[str] | None = None) -> Iterator[tuple[Any, Any]]:
    """Validated ``(key, item)`` pairs of a YAML file: a mapping keyed by entry id when ``ids`` is
    given (keys that are not ids are left out), else a list (keys are the indexes)."""
    raw, node = _read_yaml(path, warnings)
    if raw is None:
        return
    if not isinstance(raw, dict if ids is not None else list):
        shape = "a mapping of entry id → value" if ids is not None else "a list"
        warnings.append(ParseWarning(path.name, _line(node), f"expected {shape}; ignored"))
        return
    for key, value in ((str(k), v) for k, v in raw.items()) if isinstance(raw, dict) else enumerate(raw):
        if ids is not None and key not in ids:
            line = _line(node, (key,), key=True)
            warnings.append(ParseWarning(path.name, line, f"unknown entry id {key!r}; ignored"))
            continue
        try:
            yield key, adapter.validate_python(value)
        except ValidationError as exc:
            warnings.append(_invalid(path, node, (key,), exc))
