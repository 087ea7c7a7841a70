"""Terminal rendering for the CLI (rich: colour where the terminal has it, plain text otherwise)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

_FENCE_LANG = {"shell": "bash", "sh": "bash", "text": "text", "": "text"}


def print_answer(answer: Mapping[str, Any], console: Console | None = None) -> None:
    """Prints an answer (the JSON contract) for a person.

    Args:
        answer: the answer dict.
        console: where to print (default: standard output).
    """
    con = console or Console(soft_wrap=False)
    match = answer.get("match")
    if match:
        con.print(f"[bold cyan]Q:[/] [bold]{_esc(match['question'])}[/]   [dim]({_esc(match['section'])})[/]")
        con.print(f"[green]confidence {match['confidence']:.0%}[/]  [dim]id {match['id']}[/]")
        con.print(Markdown(_without_fences(match["answer"])))
        for i, cmd in enumerate(match.get("commands", []), start=1):
            lang = _FENCE_LANG.get(cmd["language"], cmd["language"])
            con.print(f"[dim]── command {i} ({cmd['language']}) ──[/]")
            con.print(Syntax(cmd["code"], lang, theme="ansi_dark", word_wrap=False, background_color="default"))
        title = "Did you mean"
    else:
        con.print(Panel("[yellow]No good answer in the FAQ for this question.[/]\n"
                        "FAQ 中没有找到合适的答案。", expand=False))
        title = "Nearest questions"
    alts = answer.get("alternatives") or []
    if alts:
        con.print(f"[bold]{title}:[/]")
        for alt in alts:
            con.print(f"  • {_esc(alt['question'])} [dim]({alt['id']}, {alt['score']:.2f})[/]")


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
    cols = ["n", "top1", "rank1", "mrr", "recall@3", "false_reject", "rejected"]
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


def _without_fences(md: str) -> str:
    """Drops fenced blocks from the answer text: the commands are printed after it, highlighted."""
    out, inside = [], False
    for line in md.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            inside = not inside
            if inside:
                out.append("*(command below)*")
            continue
        if not inside:
            out.append(line)
    return "\n".join(out)
