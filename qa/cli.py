"""The ``qa`` command line: parse arguments, call the library, print.

Exit status: 0 success, 1 an operational failure (model, index, FAQ), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qa.errors import BuildRefused, InvalidQuestion, QAError
from qa.settings import Settings

log = logging.getLogger("qa")


def _engine(args: argparse.Namespace, rebuild: bool = False):  # type: ignore[no-untyped-def]
    """The engine the settings name; a progress bar appears only when an index is really built."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from qa.search import Engine

    bar = Progress(TextColumn("building the index"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=_err_console(), transient=True, disable=not sys.stderr.isatty())
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("build", total=total)
        bar.update(task, completed=done, total=total)

    try:
        engine = Engine.from_settings(args.settings, rebuild=rebuild, progress=progress)
    finally:
        bar.stop()
    if engine.built and engine.kb.warnings:  # a first build: say what did not load
        _print_warnings(engine.kb.warnings, "built from what loaded; these parts were left out:")
    return engine


def _print_warnings(warnings: Sequence[object], title: str) -> None:
    print(f"qa: {title}", file=sys.stderr)
    for w in warnings:
        print(f"  {w}", file=sys.stderr)


def _err_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


def cmd_ask(args: argparse.Namespace) -> int:
    """Answers questions: readable, or JSON, or JSON lines from standard input."""
    if args.question == ["-"]:
        from qa.contract import ErrorBody

        engine = _engine(args)
        status = 0
        for line in sys.stdin:
            line = line.rstrip("\n")
            try:
                print(engine.ask(line, args.top_k).model_dump_json(), flush=True)
            except InvalidQuestion as exc:
                error = ErrorBody.model_validate({"error": {"code": "invalid_question", "message": str(exc)}})
                print(json.dumps({"question": line, **error.model_dump()}, ensure_ascii=False), flush=True)
                status = 2
        return status
    question = " ".join(args.question)
    if not question.strip():
        raise InvalidQuestion("the question is empty; usage: qa ask \"your question\"")
    answer = _engine(args).ask(question, args.top_k)
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        from qa.render import print_answer

        print_answer(answer)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Builds or refreshes the index, and says which it did."""
    engine = _engine(args, rebuild=args.force)
    d = engine.dense
    what = f"built in {d.build_seconds:.2f}s" if engine.built else "already current, nothing to build"
    print(f"index: {len(d)} vectors of {d.dim} dims for {len(engine.kb.entries)} entries, "
          f"model {d.model}, in {args.settings.index_dir} ({what})")
    if not engine.built and engine.kb.warnings:
        _print_warnings(engine.kb.warnings, "the data has problems (the index was built with --allow-warnings):")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Prints evaluation metrics per language and kind."""
    from qa import evaluate
    from qa.render import print_report

    files = [Path(f) for f in args.files] or [args.settings.data_dir / "eval"]
    examples = evaluate.read_examples(files)
    if not examples:
        raise InvalidQuestion(f"no evaluation examples in {', '.join(map(str, files))}")
    engine = _engine(args)
    outcomes = evaluate.run(engine, examples)
    rep = evaluate.report(outcomes)
    if args.json:
        print(json.dumps({"report": rep, "failures": evaluate.failures(outcomes)}, ensure_ascii=False, indent=2))
    else:
        print_report(rep, evaluate.failures(outcomes) if args.failures else [], engine.threshold)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Lists the FAQ entries."""
    from qa.knowledge import KnowledgeBase

    kb = KnowledgeBase.load(args.settings.data_dir, args.settings.faq_dir)
    for e in kb.entries:
        print(f"{e.id}  [{e.section}]  {e.question}")
    for w in kb.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Prints one entry as the FAQ has it (the original of a translated answer)."""
    from qa.knowledge import KnowledgeBase

    kb = KnowledgeBase.load(args.settings.data_dir, args.settings.faq_dir)
    entry = kb.by_id.get(args.id)
    if entry is None:
        raise InvalidQuestion(f"no FAQ entry with id {args.id!r}; 'qa list' shows the ids")
    if args.json:
        print(entry.model_dump_json(indent=2))
    else:
        from qa.render import print_entry

        print_entry(entry)
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    """Checks the FAQ and data files before publishing; exits 1 under --strict when anything is found."""
    from qa import lint

    report = lint.lint(args.settings.data_dir, args.settings.faq_dir, strict=args.strict,
                       kubernetes_version=args.kubernetes_version, embeddings=not args.no_embeddings,
                       model=args.settings.model, similarity=args.similarity)
    if args.json:
        print(report.to_json())
    else:
        lint.print_report(report)
    return 1 if args.strict and report.findings else 0


@contextmanager
def _records(settings: Settings) -> Iterator[tuple[Any, Any]]:
    """The records database (migrated) and the knowledge base, for ``qa report`` and ``qa suggest``;
    a missing SQLite file or a database error is a one-line :class:`QAError`."""
    from sqlalchemy.exc import SQLAlchemyError

    from qa.knowledge import KnowledgeBase
    from qa.records import db

    url = db.database_url(settings)
    engine = db.make_engine(url)
    path = db.sqlite_path(engine)
    if path is not None and not path.exists():
        raise QAError(f"no records database at {path}; the server makes it when it records its first question "
                      "(see QA_DATABASE_URL and QA_STATE_DIR)")
    try:
        kb = KnowledgeBase.load(settings.data_dir, settings.faq_dir)
        db.upgrade(engine)
        yield engine, kb
    except SQLAlchemyError as exc:
        raise QAError(f"cannot read the records database {db.describe(url)}: {exc.__class__.__name__}") from None
    finally:
        engine.dispose()


def cmd_report(args: argparse.Namespace) -> int:
    """Prints the maintainer's report over the records (the same as ``GET /admin/report``)."""
    from qa import report
    from qa.encoders import load_encoder

    since = report.parse_since(args.since)
    with _records(args.settings) as (engine, kb):
        rep = report.build_report(engine, since=since, encoder=lambda: load_encoder(args.settings.model),
                                  titles={e.id: e.question for e in kb.entries},
                                  similarity=report.DEFAULT_SIMILARITY if args.similarity is None else args.similarity,
                                  top=args.top)
    print(report.render(rep, args.format))
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    """Proposes real phrasings for data/alternates.yaml from the records; writes those accepted."""
    from qa import report, suggest
    from qa.encoders import load_encoder

    since = report.parse_since(args.since)
    if args.min_count < 1:
        raise ValueError(f"--min-count: at least 1, got {args.min_count}")
    floor = suggest.GUESS_FLOOR if args.min_confidence is None else args.min_confidence
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"--min-confidence: between 0 and 1, got {floor}")
    with _records(args.settings) as (engine, kb):
        listing = suggest.build_suggestions(
            engine, kb, since=since, encoder=lambda: load_encoder(args.settings.model),
            similarity=report.DEFAULT_SIMILARITY if args.similarity is None else args.similarity,
            guess_floor=floor)
    shown = listing.filtered(min_count=args.min_count, confirmed=args.confirmed, top=args.top)
    if args.accept:
        chosen = suggest.select(listing, args.accept)  # any id of the window, whatever the filters
    elif args.accept_all:
        chosen = [(s, s.entry_id) for s in shown.suggestions]
    elif args.review:
        chosen = _review(shown)
    else:
        print(suggest.to_json(shown) if args.format == "json" else
              suggest.to_table(shown, min_count=args.min_count, confirmed=args.confirmed))
        return 0
    done = suggest.accept(chosen, args.settings.data_dir, args.settings.faq_dir, dry_run=args.dry_run)
    if args.format == "json":
        print(done.to_json())
        return 0
    verb = "would add" if args.dry_run else "added"
    print(f"{verb} {len(done.added)} phrasing(s) to {done.path}" + (":" if done.added else ""))
    for sid, entry_id, text in done.added:
        print(f"  {sid}  {entry_id}  + {text}")
    for sid, entry_id, text, reason in done.skipped:
        print(f"  {sid}  {entry_id}  skipped ({reason}): {text}")
    if done.written:
        print("the index is stale now: 'qa build' rebuilds it; a running server serves them after its next reload "
              "(POST /admin/reload, or at once with QA_WATCH=true) or restart")
    return 0


def _review(listing):  # type: ignore[no-untyped-def]
    """Asks about each suggestion on the terminal: y (accept), n (skip), q (stop asking)."""
    from qa import suggest

    chosen = []
    for s in listing.suggestions:
        print("\n".join(suggest.describe(s)))
        try:
            said = input("accept? [y/N/q] ").strip().lower()
        except EOFError:
            break
        if said == "q":
            break
        if said in ("y", "yes"):
            chosen.append((s, s.entry_id))
    return chosen


def cmd_serve(args: argparse.Namespace) -> int:
    """Starts the HTTP server (API, chat page, Slack)."""
    try:
        from server.main import serve
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise QAError(f"the server is not installed ({exc}); run 'make install'") from exc
    return serve(host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="qa",
                                description="Answers questions from the OpenKruise FAQ (Chinese and English).")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.add_argument("--model", help="encoder (env QA_MODEL)")
    p.add_argument("--data-dir", type=Path, help="data folder (env QA_DATA_DIR)")
    p.add_argument("--index-dir", type=Path, help="index folder (env QA_INDEX_DIR)")
    p.add_argument("--threshold", type=float, help="confidence threshold 0..1 (env QA_THRESHOLD)")
    p.add_argument("--allow-warnings", action="store_true", default=None,
                   help="build even when the FAQ or data files have problems and would replace a good index "
                        "(env QA_ALLOW_WARNINGS)")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("ask", help="answer a question", description="Answer a question. '-' reads one question "
                       "a line from standard input and prints one JSON object a line.")
    a.add_argument("question", nargs="+", help="the question, or '-' for standard input")
    a.add_argument("--json", action="store_true", help="print the JSON contract")
    a.add_argument("-k", "--top-k", type=int, default=3, choices=range(1, 11), metavar="1..10",
                   help="candidates in all (default 3)")
    a.set_defaults(func=cmd_ask)

    b = sub.add_parser("build", help="build or refresh the index")
    b.add_argument("--force", action="store_true", help="rebuild even when the index is current")
    b.set_defaults(func=cmd_build)

    e = sub.add_parser("eval", help="evaluate on labelled questions (default: data/eval)")
    e.add_argument("files", nargs="*", help="JSON Lines files or folders")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.add_argument("--failures", action="store_true", help="list the questions answered wrongly")
    e.set_defaults(func=cmd_eval)

    ls = sub.add_parser("list", help="list the FAQ entries")
    ls.set_defaults(func=cmd_list)

    sh = sub.add_parser("show", help="print one FAQ entry as written (e.g. the original of a translated answer)")
    sh.add_argument("id", help="the entry id (see 'qa list')")
    sh.add_argument("--json", action="store_true", help="print the entry as JSON")
    sh.set_defaults(func=cmd_show)

    li = sub.add_parser("lint", help="check the FAQ and data files before publishing",
                        description="Check the FAQ and its data files: local or broken links, YAML blocks that do "
                        "not parse, Kubernetes manifests with removed or deprecated API versions (offline schemas), "
                        "entries without translation or alternates, stale translations, colliding alternates, "
                        "entries the encoder cannot tell apart. Findings are warnings (exit 0); --strict makes "
                        "them errors (exit 1).")
    li.add_argument("--strict", action="store_true", help="findings are errors: exit 1 when there is any")
    li.add_argument("--json", action="store_true", help="print a JSON list of {file, line, severity, code, message}")
    li.add_argument("--kubernetes-version", metavar="X.Y", default=None,
                    help="the Kubernetes version manifests must work on (default: the newest the schemas cover)")
    li.add_argument("--no-embeddings", action="store_true",
                    help="skip the close-pair check (the only one that loads the encoder)")
    li.add_argument("--similarity", type=float, default=None, metavar="COSINE",
                    help="cosine from which two entries' questions are a close pair (default 0.94, chosen for "
                         "multilingual-e5-small)")
    li.set_defaults(func=cmd_lint)

    r = sub.add_parser("report", help="what people asked: volume, answered/refused, feedback, unanswered questions",
                       description="The maintainer's report over the records the server keeps (QA_DATABASE_URL, "
                       "or SQLite in QA_STATE_DIR): volume by surface and language, answered / refused / helpful / "
                       "unhelpful rates, each entry's figures, the most frequent unanswered questions grouped by "
                       "meaning, and the answers marked unhelpful with their comments. GET /admin/report gives the "
                       "same as JSON.")
    r.add_argument("--since", default="7d", help="window: 7d, 12h, 30m, 2w or a date (UTC); default 7d")
    r.add_argument("--format", choices=["table", "json", "csv"], default="table", help="default table")
    r.add_argument("--similarity", type=float, default=None, metavar="COSINE",
                   help="cosine from which unanswered questions are grouped (default 0.92, chosen for "
                        "multilingual-e5-small)")
    r.add_argument("--top", type=int, default=20, help="unanswered groups listed at most (default 20)")
    r.set_defaults(func=cmd_report)

    sg = sub.add_parser("suggest", help="real phrasings to add to data/alternates.yaml, from the records",
                        description="Proposes, for each FAQ entry, the phrasings people really used that are worth "
                        "adding to data/alternates.yaml: questions refused, answered with low confidence, marked 👎, "
                        "or followed by a click on a 'did you mean' alternative (which names the entry). Similar "
                        "phrasings are grouped by meaning and ranked by how often they were asked, with the evidence. "
                        "A suggestion marked 'guess' is the engine's best candidate: judge it. --accept writes "
                        "suggestions into the alternates file, keeping its comments and layout.")
    sg.add_argument("--since", default="7d", help="window: 7d, 12h, 30m, 2w or a date (UTC); default 7d")
    sg.add_argument("--format", choices=["table", "json"], default="table", help="default table")
    sg.add_argument("--min-count", type=int, default=1, metavar="N",
                    help="list suggestions asked at least N times (default 1)")
    sg.add_argument("--confirmed", action="store_true", help="only suggestions a click or 👍 confirmed (no guesses)")
    sg.add_argument("--min-confidence", type=float, default=None, metavar="C",
                    help="refused questions under this confidence are off-topic and left out, unless a click "
                         "names their entry (default 0.1)")
    sg.add_argument("--top", type=int, default=None, metavar="N", help="list the N first only")
    sg.add_argument("--similarity", type=float, default=None, metavar="COSINE",
                    help="cosine from which phrasings are grouped (default 0.92, as qa report)")
    how = sg.add_mutually_exclusive_group()
    how.add_argument("--accept", nargs="+", metavar="ID[=ENTRY]",
                     help="write these suggestions (ids from the listing; =ENTRY files one under another entry)")
    how.add_argument("--accept-all", action="store_true", help="write every suggestion listed (with the filters)")
    how.add_argument("--review", action="store_true", help="ask about each suggestion listed: y, n or q")
    sg.add_argument("--dry-run", action="store_true", help="with --accept…: say what would be written, write nothing")
    sg.set_defaults(func=cmd_suggest)

    s = sub.add_parser("serve", help="start the HTTP server")
    s.add_argument("--host", default=None, help="bind address (env QA_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (env QA_PORT, default 8000)")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qa`` console script.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("jieba", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides = {k: v for k, v in {"model": args.model, "data_dir": args.data_dir, "index_dir": args.index_dir,
                                   "threshold": args.threshold, "allow_warnings": args.allow_warnings}.items()
                 if v is not None}
    try:
        args.settings = Settings(**overrides)
        return int(args.func(args))
    except InvalidQuestion as exc:
        print(f"qa: error: {exc}", file=sys.stderr)
        return 2
    except BuildRefused as exc:
        _print_warnings(exc.warnings, f"error: the FAQ or data files have {len(exc.warnings)} problem(s), so the "
                                      f"index in {args.settings.index_dir} was left as it is:")
        print("qa: fix them, or build anyway with --allow-warnings", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad settings or evaluation files
        print(f"qa: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except QAError as exc:
        print(f"qa: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
