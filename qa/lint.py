"""``qa lint``: what a maintainer (or the CI of a FAQ repository) checks before publishing the FAQ.

Each check reads the files as written and gives every finding its file and line:

- ``link-local``, ``link-relative``, ``link-empty``, ``link-scheme``, ``link-malformed``: links that
  lead nowhere for a reader of the bot (``file://`` links to the author's machine, relative paths,
  in-page anchors, empty targets, schemes the surfaces do not link, URLs that do not parse). The
  parser drops ``file://`` links from answers, so the markdown files are read here directly.
  Nothing is fetched: the check is offline.
- ``yaml-invalid``: a ```` ```yaml ```` block that does not parse.
- ``k8s-removed``, ``k8s-deprecated``, ``k8s-unknown``, ``k8s-schema``: Kubernetes manifests in YAML
  blocks whose ``apiVersion``/``kind`` the target Kubernetes version no longer serves (or serves
  beside a stable version), or whose fields do not match the schema; checked against the schemas
  the ``kubernetes-validate`` package ships (Kubernetes 1.25 and later), offline. Custom resources
  (``apps.kruise.io/…`` and other groups the schemas do not know) are not checked.
- ``no-translation``, ``no-alternates``: entries an English asker will not find.
- ``translation-stale``, ``translation-unhashed``: translations whose ``source_hash`` no longer
  matches the Chinese entry they were made from (see :func:`source_hash`), or that have none.
- ``alternate-collision``: the same phrasing under two entries (an alternate equal to another
  entry's alternate, question or translation, or to a known-gap example).
- ``close-pair``: entries whose questions the encoder places so close that the bot confuses them.
- ``data``: what :meth:`~qa.knowledge.KnowledgeBase.load` left out (unparsable files, bad items,
  unknown ids, unclosed fences, duplicate questions).

Findings are warnings (the shipped FAQ is published verbatim); ``--strict`` makes them errors.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import yaml

from qa.contract import Entry
from qa.knowledge import ALTERNATES, OUT_OF_SCOPE, TRANSLATIONS, KnowledgeBase
from qa.markdown import _MD, SAFE_SCHEMES
from qa.segment import detect_language
from qa.settings import DEFAULT_MODEL

log = logging.getLogger(__name__)

Severity = Literal["warning", "error"]
DEFAULT_SIMILARITY = 0.94  # chosen on the shipped FAQ with multilingual-e5-small: see close_pairs
YAML_LANGUAGES = ("yaml", "yml")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")
_PRE_RELEASE = re.compile(r"^v(\d+)(alpha|beta)(\d+)$")


class LintUsageError(ValueError):
    """A lint option that cannot be used (the CLI exits 2)."""


@dataclass(frozen=True)
class Finding:
    """One problem, where it is."""

    file: str
    line: int
    severity: Severity
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.severity}] {self.code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """``{file, line, severity, code, message}`` (the ``--json`` form)."""
        return asdict(self)


@dataclass
class LintReport:
    """The findings, in file order then line order, and what was checked."""

    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every file looked at, in the order findings are sorted
    checked: dict[str, int] = field(default_factory=dict)  # links, yaml_blocks, manifests, custom_resources, ...
    kubernetes_version: str = ""

    def to_json(self) -> str:
        """The findings as a JSON list of ``{file, line, severity, code, message}``."""
        return json.dumps([f.as_dict() for f in self.findings], ensure_ascii=False, indent=2)


def source_hash(entry: Entry) -> str:
    """The hash of a Chinese entry that its translation records as ``source_hash`` in translations.yaml.

    Twelve hex digits of SHA-256 over the question and the answer's markdown (as the parser reads
    it), with runs of white space made one space: re-wrapping a line keeps the hash, changing a
    word, a command or a link changes it.
    """
    text = " ".join(f"{entry.question}\n{entry.markdown}".split())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """State shared by the checks of one lint run."""

    severity: Severity
    kubernetes: str | None  # target version "1.37", or None until a manifest needs it
    kubernetes_option: str | None
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: {
        "links": 0, "yaml_blocks": 0, "manifests": 0, "custom_resources": 0})

    def add(self, path: Path, line: int, code: str, message: str) -> None:
        self.findings.append(Finding(_display(path), line, self.severity, code, message))


def lint(data_dir: Path, faq_dir: Path | None = None, *, strict: bool = False,
         kubernetes_version: str | None = None, embeddings: bool = True, model: str = DEFAULT_MODEL,
         similarity: float | None = None, encoder: Any = None) -> LintReport:
    """Lints a data folder: the FAQ markdown and the maintainers' data files.

    Args:
        data_dir: the data folder (``faq/``, ``alternates.yaml``, ``translations.yaml``, …).
        faq_dir: the FAQ folder (default ``data_dir/faq``).
        strict: findings are errors rather than warnings.
        kubernetes_version: the version manifests must work on (``1.26``, ``v1.30.2``; default:
            the newest the schemas cover).
        embeddings: run the close-pair check (it loads the encoder; nothing else needs it).
        model: the encoder for the close-pair check (a :class:`~qa.settings.Settings` ``model``).
        similarity: the cosine from which two entries' questions count as a close pair (default
            :data:`DEFAULT_SIMILARITY`, chosen for multilingual-e5-small).
        encoder: an encoder already loaded (default: load ``model`` when needed).

    Returns:
        The report.

    Raises:
        LintUsageError: for a Kubernetes version the schemas do not cover.
        FAQError: when no FAQ entry can be loaded.
        ModelLoadError: when the encoder cannot be loaded (run with ``embeddings=False``).
    """
    data_dir = Path(data_dir)
    faq_dir = Path(faq_dir) if faq_dir else data_dir / "faq"
    run = _Run("error" if strict else "warning", None, kubernetes_version)
    if kubernetes_version is not None:
        run.kubernetes = _target_version(kubernetes_version)
    similarity = DEFAULT_SIMILARITY if similarity is None else similarity
    if not -1.0 <= similarity <= 1.0:
        raise LintUsageError(f"--similarity {similarity:g}: a cosine is between -1 and 1")
    with _quiet("qa.faq", "qa.knowledge"):  # their warnings become findings below
        kb = KnowledgeBase.load(data_dir, faq_dir)
    md_files = sorted(faq_dir.rglob("*.md")) if faq_dir.is_dir() else [faq_dir]
    data_files = [data_dir / n for n in (ALTERNATES, TRANSLATIONS, OUT_OF_SCOPE)]
    by_name = {p.name: p for p in [*data_files, *md_files]}
    for w in kb.warnings:
        run.add(by_name.get(w.source, data_dir / w.source), w.line, "data", w.message)

    for path in md_files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # already a "data" finding (cannot read)
            continue
        check_markdown(run, path, text)

    entry_path = {e.id: by_name.get(e.source_file, faq_dir / e.source_file) for e in kb.entries}
    trans_path = data_dir / TRANSLATIONS
    translations = _compose(trans_path)
    if isinstance(translations, yaml.MappingNode):
        for key, item in translations.value:
            entry = kb.by_id.get(key.value)
            if entry is None or not isinstance(item, yaml.MappingNode):
                continue  # a "data" finding already
            answer = _get(item, "answer")
            if isinstance(answer, yaml.ScalarNode):
                exact = answer.style == "|"
                check_markdown(run, trans_path, answer.value,
                               answer.start_mark.line + (1 if exact else 0), exact=exact)
            _check_hash(run, trans_path, key, item, entry, entry_path[entry.id])

    for e in kb.entries:
        where = entry_path[e.id]
        if e.id not in kb.translations and detect_language(e.question) != "en":  # an English entry needs none
            run.add(where, e.line, "no-translation", f"{e.id} «{e.question}» has no English translation in "
                    f"{TRANSLATIONS}: English askers find it only through its alternates")
        if not kb.alternates.get(e.id):
            run.add(where, e.line, "no-alternates", f"{e.id} «{e.question}» has no alternates in {ALTERNATES}: "
                    "only its own question (and translation) lead to it")

    check_collisions(run, kb, data_dir, entry_path)
    if embeddings:
        close_pairs(run, kb, entry_path, similarity, encoder=encoder, model=model)

    files = [_display(p) for p in [*md_files, *data_files]]
    order = {f: i for i, f in enumerate(files)}
    run.findings.sort(key=lambda f: (order.get(f.file, len(order)), f.file, f.line, f.code, f.message))
    return LintReport(run.findings, files, run.checked, run.kubernetes or "")


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _display(path: Path) -> str:
    """The path as given to the user: relative to the working folder when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# --------------------------------------------------------------------------- markdown: links and YAML blocks


def check_markdown(run: _Run, path: Path, text: str, first_line: int = 0, *, exact: bool = True) -> None:
    """Checks the links and YAML blocks of a markdown text.

    Args:
        run: where findings go.
        path: the file the text is in.
        text: the markdown.
        first_line: the file's 0-based line of the text's first line.
        exact: the text's lines are the file's lines from ``first_line`` on (else every finding
            is given ``first_line``: a folded or quoted YAML string).
    """
    lines = text.splitlines()

    def at(i: int) -> int:  # a 0-based line of the text → the file's 1-based line
        return first_line + (i if exact else 0) + 1

    for tok in _MD.parse(text):
        if tok.type == "fence" and tok.map is not None:
            info = tok.info.split()
            if info and info[0].lower() in YAML_LANGUAGES:
                check_yaml_block(run, path, tok.content, at(tok.map[0] + 1))
            continue
        if tok.type != "inline" or tok.map is None:
            continue
        start, end = tok.map
        cursor = (start, 0)
        for child in tok.children or []:
            if child.type == "link_open":
                href = str(child.attrs.get("href", ""))
            elif child.type == "image":
                href = str(child.attrs.get("src", ""))
            else:
                continue
            run.checked["links"] += 1
            cursor = _find(lines, href, cursor, end)
            problem = link_problem(href)
            if problem is not None:
                run.add(path, at(cursor[0]), *problem)


def _find(lines: list[str], href: str, cursor: tuple[int, int], end: int) -> tuple[int, int]:
    """Where the link target is written, from ``cursor`` (line, column) on, within the block."""
    needles = [n for n in dict.fromkeys([href, unquote(href), "]()" if not href else ""]) if n]
    line, col = cursor
    for i in range(line, min(end, len(lines))):
        hits = [j for n in needles if (j := lines[i].find(n, col if i == line else 0)) >= 0]
        if hits:
            return i, min(hits) + 1
    return cursor


def link_problem(href: str) -> tuple[str, str] | None:
    """``(code, message)`` for a link target a reader of the bot cannot follow, or None."""
    url = href.strip()
    if not url:
        return "link-empty", "link with an empty target"
    low = url.lower()
    if low.startswith("file:"):
        return "link-local", f"file:// link to a file on the author's machine: {url} (readers cannot open it; " \
                             "the bot shows the link text only)"
    if url.startswith("#"):
        return "link-local", f"in-page anchor {url}: answers are shown on their own, so it leads nowhere"
    if not _SCHEME.match(url):
        return "link-relative", f"relative link {url}: it resolves only inside the FAQ's repository; " \
                                "use an absolute https:// URL"
    if not low.startswith(SAFE_SCHEMES):
        scheme = low.split(":", 1)[0]
        return "link-scheme", f"{scheme}: link {url}: the bot links only http(s) and mailto, readers see its text"
    if low.startswith("mailto:"):
        return None if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", unquote(url[7:]).split("?")[0]) else (
            "link-malformed", f"mailto link without a valid address: {url}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        host = (parts.hostname or "").rstrip(".")
    except ValueError as exc:
        return "link-malformed", f"URL does not parse ({exc}): {url}"
    if not host:
        return "link-malformed", f"URL without a host: {url}"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if not ip.is_global:
            return "link-local", f"link to a local or private address: {url}"
        return None
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".svc", ".cluster.local")):
        return "link-local", f"link to a local host name: {url}"
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "link-malformed", f"URL with an invalid host name {host!r}: {url}"
    if not _HOST.match(ascii_host) or "." not in ascii_host:
        return "link-malformed", f"URL with an invalid host name {host!r}: {url}"
    if any(c.isspace() for c in url):
        return "link-malformed", f"URL with white space in it: {url}"
    return None


def check_yaml_block(run: _Run, path: Path, code: str, first_line: int) -> None:
    """Checks one YAML block: it parses, and its Kubernetes manifests are served by the target version.

    ``first_line`` is the file's 1-based line of the block's first line.
    """
    run.checked["yaml_blocks"] += 1
    try:
        docs = list(yaml.safe_load_all(code))
        nodes = list(yaml.compose_all(code, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = first_line + (mark.line if mark is not None else 0)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        run.add(path, line, "yaml-invalid", f"YAML block does not parse: {problem}"
                                            f"{f' ({context})' if context else ''}")
        return
    for doc, node in zip(docs, nodes):
        if isinstance(doc, dict) and isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str):
            if not _have_schemas():
                run.add(path, first_line, "k8s-unchecked", "Kubernetes manifest not checked: the API schemas are "
                                                           "in the optional 'lint' extra (pip install "
                                                           "'kruise-faq-bot[lint]', or make install)")
                continue
            check_manifest(run, path, doc, node, first_line)


def _have_schemas() -> bool:
    import importlib.util

    return importlib.util.find_spec("kubernetes_validate") is not None


# --------------------------------------------------------------------------- Kubernetes manifests


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:2])


@lru_cache(maxsize=1)
def _schemas() -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """The Kubernetes versions the schemas cover ("1.25" …, oldest first) and, for each
    ``(apiVersion, kind)`` of the built-in API, the versions that serve it."""
    import importlib.resources

    from kubernetes_validate.utils import all_versions

    versions = sorted({".".join(v.split(".")[:2]) for v in all_versions()}, key=_version_key)
    served: dict[tuple[str, str], list[str]] = {}
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    for v in versions:
        defs = json.loads((root / f"v{v}.0-local" / "_definitions.json").read_text(encoding="utf-8"))
        seen: set[tuple[str, str]] = set()
        for schema in defs.get("$defs", defs.get("definitions", {})).values():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                api = f"{gvk['group']}/{gvk['version']}" if gvk.get("group") else gvk["version"]
                seen.add((api, gvk["kind"]))
        for key in seen:
            served.setdefault(key, []).append(v)
    return versions, served


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions the schemas cover, oldest first ("1.25", …)."""
    return _schemas()[0]


def _target_version(option: str) -> str:
    versions = kubernetes_versions()
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", option.strip())
    target = f"{m.group(1)}.{m.group(2)}" if m else None
    if target not in versions:
        raise LintUsageError(f"--kubernetes-version {option!r}: the schemas cover Kubernetes "
                             f"{versions[0]} to {versions[-1]} (e.g. 1.30)")
    return target


def _api_rank(api: str) -> tuple[int, int, int]:
    """Kubernetes' version priority: GA above beta above alpha, then by number."""
    version = api.rsplit("/", 1)[-1]
    m = _PRE_RELEASE.match(version)
    if m:
        return int(m.group(1)), {"alpha": 0, "beta": 1}[m.group(2)], int(m.group(3))
    digits = re.findall(r"\d+", version)
    return int(digits[0]) if digits else 0, 2, 0


def check_manifest(run: _Run, path: Path, doc: dict[str, Any], node: yaml.Node, first_line: int) -> None:
    """Checks a manifest's apiVersion and kind against the target Kubernetes version, then its fields."""
    api, kind = doc["apiVersion"].strip(), doc["kind"].strip()
    versions, served = _schemas()
    if run.kubernetes is None:
        run.kubernetes = versions[-1]
    target = run.kubernetes
    group = api.rsplit("/", 1)[0] if "/" in api else ""
    known_groups = {a.rsplit("/", 1)[0] if "/" in a else "" for a, _ in served}
    if group not in known_groups and "." in group:
        run.checked["custom_resources"] += 1  # a CRD's group: no schema to check against
        return
    run.checked["manifests"] += 1
    line = first_line + _line_at(node, ("apiVersion",))
    where = f"{kind} {api}"
    serving = served.get((api, kind), [])
    any_group = sorted((a for (a, k), vs in served.items() if k == kind and target in vs), key=_api_rank)
    in_target = [a for a in any_group if (a.rsplit("/", 1)[0] if "/" in a else "") == group]
    suggest = list(reversed(in_target or any_group))
    instead = f"; Kubernetes {target} serves {kind} as {', '.join(suggest)}" if suggest else ""
    if target not in serving:
        later = [v for v in versions if _version_key(v) > _version_key(target)]
        if serving and _version_key(serving[-1]) < _version_key(target):
            removed = versions[versions.index(serving[-1]) + 1]
            run.add(path, line, "k8s-removed", f"{where} was removed in Kubernetes {removed} (last served by "
                                               f"{serving[-1]}), so it fails on {target}{instead}")
        elif serving and later and serving[0] in later:
            run.add(path, line, "k8s-unknown", f"{where} is not served yet by Kubernetes {target} (first "
                                               f"served by {serving[0]}){instead}")
        else:
            run.add(path, line, "k8s-unknown", f"{where} is not served by any Kubernetes from {versions[0]} to "
                                               f"{versions[-1]} (removed earlier, or misspelled){instead}")
        if serving:  # still check the fields, against the last version that knew them
            older = _version_key(serving[-1]) < _version_key(target)
            _check_fields(run, path, doc, node, first_line, serving[-1] if older else serving[0])
        return
    better = [a for a in in_target if _api_rank(a) > _api_rank(api)]
    if _api_rank(api)[1] < 2 and better and _api_rank(better[-1])[1] == 2:
        run.add(path, line, "k8s-deprecated", f"{where} is a pre-release API that Kubernetes {target} serves "
                                              f"beside {better[-1]}; pre-release versions are removed after the "
                                              f"stable one ships: use {better[-1]}")
    _check_fields(run, path, doc, node, first_line, target)


def _check_fields(run: _Run, path: Path, doc: dict[str, Any], node: yaml.Node, first_line: int,
                  version: str) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        loc = tuple(exc.path)
        where = ".".join(str(p) for p in loc) or "(top level)"
        run.add(path, first_line + _line_at(node, loc), "k8s-schema",
                f"{doc['kind']} {doc['apiVersion']} (Kubernetes {version} schema): {where}: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - a schema the package cannot read must not stop the lint
        log.info("could not validate %s %s against %s: %s", doc["kind"], doc["apiVersion"], version, exc)


def _line_at(node: yaml.Node, loc: Sequence[Any]) -> int:
    """The 0-based line of the deepest thing along ``loc`` (mapping keys and sequence indexes) that
    exists: the key of a mapping value (where ``resource:`` is written), the start of a list item."""
    line = node.start_mark.line
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line
        else:
            break
    return line


# --------------------------------------------------------------------------- data files


def _compose(path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # absent, or already a "data" finding
        return None


def _get(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((v for k, v in node.value if k.value == key), None)


def _check_hash(run: _Run, path: Path, key: yaml.Node, item: yaml.MappingNode, entry: Entry,
                entry_path: Path) -> None:
    current = source_hash(entry)
    stored = _get(item, "source_hash")
    source = f"{_display(entry_path)}:{entry.line}"
    if stored is None or not str(stored.value).strip():
        run.add(path, key.start_mark.line + 1, "translation-unhashed",
                f"translation of {entry.id} has no source_hash, so it cannot be told whether it is older than "
                f"the Chinese entry ({source}); once it matches it, add  source_hash: \"{current}\"")
    elif str(stored.value).strip() != current:
        run.add(path, stored.start_mark.line + 1, "translation-stale",
                f"translation of {entry.id} is older than its Chinese source ({source}), which changed since "
                f"source_hash {stored.value} was recorded; update the translation, then set  "
                f"source_hash: \"{current}\"")


def normalise_phrase(text: str) -> str:
    """A phrasing as compared for collisions: NFKC, case folded, white space collapsed, end punctuation gone."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split()).rstrip("?？.。!！ ")


def check_collisions(run: _Run, kb: KnowledgeBase, data_dir: Path, entry_path: dict[str, Path]) -> None:
    """The same phrasing under two owners (entries, or an entry and a known gap)."""
    # normalised phrasing → (owner, what, file, line)
    seen: dict[str, list[tuple[str, str, Path, int]]] = {}

    def note(text: str, owner: str, what: str, path: Path, line: int) -> None:
        key = normalise_phrase(text)
        if key:
            seen.setdefault(key, []).append((owner, what, path, line))

    for e in kb.entries:
        note(e.question, e.id, "question", entry_path[e.id], e.line)
    alt_path, trans_path, gap_path = data_dir / ALTERNATES, data_dir / TRANSLATIONS, data_dir / OUT_OF_SCOPE
    alternates = _compose(alt_path)
    if isinstance(alternates, yaml.MappingNode):
        for key, items in alternates.value:
            if key.value in kb.by_id and isinstance(items, yaml.SequenceNode):
                for item in items.value:
                    if isinstance(item, yaml.ScalarNode):
                        note(item.value, key.value, "alternate", alt_path, item.start_mark.line + 1)
    translations = _compose(trans_path)
    if isinstance(translations, yaml.MappingNode):
        for key, item in translations.value:
            q = _get(item, "question") if isinstance(item, yaml.MappingNode) else None
            if key.value in kb.by_id and isinstance(q, yaml.ScalarNode):
                note(q.value, key.value, "translated question", trans_path, q.start_mark.line + 1)
    gaps = _compose(gap_path)
    if isinstance(gaps, yaml.SequenceNode):
        for item in gaps.value:
            topic = _get(item, "topic") if isinstance(item, yaml.MappingNode) else None
            examples = _get(item, "examples") if isinstance(item, yaml.MappingNode) else None
            if isinstance(examples, yaml.SequenceNode):
                owner = f"gap:{topic.value if isinstance(topic, yaml.ScalarNode) else '?'}"
                for ex in examples.value:
                    if isinstance(ex, yaml.ScalarNode):
                        note(ex.value, owner, "known-gap example", gap_path, ex.start_mark.line + 1)

    for places in seen.values():
        if len({owner for owner, *_ in places}) < 2:
            continue
        for owner, what, path, line in places:
            if what == "question":
                continue  # two equal questions are a "data" finding (duplicate question); report the others
            others = [(o, w, p, n) for o, w, p, n in places if o != owner]
            said = "; ".join(f"{w} of {_owner(o)} ({_display(p)}:{n})" for o, w, p, n in others)
            run.add(path, line, "alternate-collision",
                    f"{what} of {_owner(owner)} is also the {said}: the bot cannot tell which one is meant")


def _owner(owner: str) -> str:
    return f"known gap «{owner[4:]}»" if owner.startswith("gap:") else f"entry {owner}"


# --------------------------------------------------------------------------- embeddings


def close_pairs(run: _Run, kb: KnowledgeBase, entry_path: dict[str, Path], threshold: float, *,
                encoder: Any = None, model: str = DEFAULT_MODEL) -> None:
    """Pairs of entries whose questions are closer than ``threshold`` (cosine), as written or in
    their English translations: the bot confuses such entries unless alternates tell them apart.

    The questions are encoded as queries, as the index encodes them. The default threshold (0.94,
    for multilingual-e5-small) was read off the shipped FAQ: of its 253 pairs, the median cosine is
    0.85 and the 99th percentile 0.944; the four pairs at 0.94 or more are the neighbours the
    alternates were written to separate (how to monitor vs which metrics, in-place benefits vs
    limits, when to use CloneSet vs how to migrate to it, updating sidecars vs their dependencies).
    Another encoder spreads cosines differently: choose its threshold with ``--similarity``.
    """
    entries = kb.entries
    if len(entries) < 2:
        return
    if encoder is None:
        from qa.encoders import load_encoder

        encoder = load_encoder(model)
    import numpy as np

    original = np.asarray(encoder.encode([e.question for e in entries], "query"), dtype=np.float32)
    sims = {"questions": original @ original.T}
    translated = [e.id in kb.translations for e in entries]
    if sum(translated) >= 2:
        en = np.asarray(encoder.encode([kb.translations[e.id].question if t else e.question
                                        for e, t in zip(entries, translated)], "query"), dtype=np.float32)
        sims["translations"] = en @ en.T
    run.checked["entry_pairs"] = len(entries) * (len(entries) - 1) // 2
    for i, a in enumerate(entries):
        for j in range(i + 1, len(entries)):
            b = entries[j]
            scores = {"questions": float(sims["questions"][i, j])}
            if "translations" in sims and translated[i] and translated[j]:
                scores["translations"] = float(sims["translations"][i, j])
            if max(scores.values()) < threshold:
                continue
            said = ", ".join(f"{s:.3f} ({lang})" for lang, s in scores.items())
            run.add(entry_path[a.id], a.line, "close-pair",
                    f"{a.id} «{a.question}» and {b.id} «{b.question}» ({_display(entry_path[b.id])}:{b.line}) are "
                    f"close: cosine {said}, threshold {threshold:g}; the bot may confuse them: give each "
                    "alternates that tell them apart")


# --------------------------------------------------------------------------- output


def print_report(report: LintReport) -> None:
    """The findings grouped by file, one ``file:line: [severity] code: message`` a line, then a summary."""
    from rich.console import Console
    from rich.text import Text

    console = Console(soft_wrap=True, highlight=False)
    by_file: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_file.setdefault(f.file, []).append(f)
    for name, found in by_file.items():
        console.print(Text(f"{name} ({len(found)})", style="bold underline"))
        for f in found:
            text = Text(f"{f.file}:{f.line}: ")
            text.append(f"[{f.severity}]", style="red" if f.severity == "error" else "yellow")
            text.append(f" {f.code}", style="bold")
            text.append(f": {f.message}")
            console.print(text)
        console.print()
    c = report.checked
    k8s = f" against Kubernetes {report.kubernetes_version}" if report.kubernetes_version else ""
    pairs = f", {c['entry_pairs']} entry pairs" if "entry_pairs" in c else ", entry pairs not compared"
    kinds = len({f.code for f in report.findings})
    summary = (f"{len(report.findings)} finding(s) of {kinds} kind(s) in {len(by_file)} file(s); checked "
               f"{c.get('links', 0)} link(s), {c.get('yaml_blocks', 0)} YAML block(s) ({c.get('manifests', 0)} "
               f"Kubernetes manifest(s){k8s}, {c.get('custom_resources', 0)} custom resource(s) not checked){pairs}")
    console.print(Text(summary, style="bold" if report.findings else "green"))
