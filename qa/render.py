"""Terminal rendering for the CLI (rich: colour where the terminal has it, plain text otherwise)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from qa.contract import Answer, Entry, Part, TextPart

_FENCE_LANG = {"shell": "bash", "sh": "bash", "text": "text", "": "text"}


def print_answer(answer: Answer, console: Console | None = None) -> None:
    """Prints an answer for a person: the English translation first when the question was English
    (with one line that leads to the Chinese original), then the parts in order.

    Args:
        answer: the answer.
        console: where to print (default: standard output).
    """
    con = console or Console()
    match = answer.match
    if match:
        shown = match.translation
        question = shown.question if shown else match.question
        con.print(f"[bold cyan]Q:[/] [bold]{_esc(question)}[/]   [dim]({_esc(match.section)})[/]")
        con.print(f"[green]confidence {match.confidence:.0%}[/]  [dim]id {match.id}[/]")
        print_parts(shown.answer if shown else match.answer, con)
        if shown:
            con.print(f"[dim]Translated from the Chinese FAQ; the original: [/]qa show {match.id}"
                      f"[dim]  ({_esc(match.question)})[/]")
        title = "Did you mean"
    else:
        con.print(Panel("[yellow]No good answer in the FAQ for this question.[/]\n"
                        "FAQ 中没有找到合适的答案。", expand=False))
        title = "Nearest questions"
    if answer.alternatives:
        con.print(f"[bold]{title}:[/]")
        for alt in answer.alternatives:
            con.print(f"  • {_esc(alt.translated_question or alt.question)} [dim]({alt.id}, {alt.score:.2f})[/]")


def print_entry(entry: Entry, console: Console | None = None) -> None:
    """Prints one FAQ entry as written (``qa show``)."""
    con = console or Console()
    con.print(f"[bold cyan]Q:[/] [bold]{_esc(entry.question)}[/]   [dim]({_esc(entry.section)}; id {entry.id})[/]")
    print_parts(entry.answer, con)


def print_parts(parts: Sequence[Part], con: Console) -> None:
    """Text parts as markdown; command parts whole (never cut at the terminal's width: long
    lines overflow and the terminal wraps them), numbered, in order."""
    n = 0
    for part in parts:
        if isinstance(part, TextPart):
            con.print(Markdown(part.markdown))
            continue
        n += 1
        con.print(f"[dim]── command {n} ({_esc(part.language)}) ──[/]")
        lexer = _FENCE_LANG.get(part.language, part.language)
        code = Syntax(part.code, lexer, theme="ansi_dark", background_color="default").highlight(part.code)
        code.rstrip()
        con.print(code, soft_wrap=True)


def print_report(report: Mapping[str, Mapping[str, Mapping[str, float | int]]],
                 failures: Sequence[Mapping[str, Any]] = (), threshold: float | None = None,
                 console: Console | None = None) -> None:
    """Prints evaluation metrics as tables.

    Args:
        report: from :func:`qa.evaluate.report`.
        failures: wrongly answered examples to list.
        threshold: the confidence threshold used, for the caption.
        console: where to print.
    """
    con = console or Console()
    cols = ["n", "top1", "rank1", "mrr", "recall@3", "false_reject", "wrong", "rejected"]
    for group in ("all", "lang", "kind"):
        t = Table(title=f"by {group}" if group != "all" else
                  f"overall (threshold {threshold})" if threshold is not None else "overall")
        t.add_column(group, overflow="fold")
        for c in cols:
            t.add_column(c, justify="right", no_wrap=True)
        for name, m in report[group].items():
            t.add_row(name, *[("-" if c not in m else str(m[c]) if c == "n" else f"{m[c]:.1%}") for c in cols])
        con.print(t)
    if failures:
        t = Table(title=f"{len(failures)} wrong")
        for c in ("q", "kind", "expected", "matched", "confidence"):
            t.add_column(c)
        for f in failures:
            t.add_row(_esc(str(f["q"]))[:80], str(f["kind"]), str(f["expected"]), str(f["matched"]),
                      f"{f['confidence']:.2f}")
        con.print(t)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))
