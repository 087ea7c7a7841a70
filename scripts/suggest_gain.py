"""What accepting ``qa suggest``'s suggestions gains on real questions (issue #9): prints figures, not a test.

data/real's rows are split by thread (their ``source`` URL: one thread's rows stay in one half) into
two halves with a fixed seed; the threads of an entry that has covered questions in several threads
are dealt to both halves (see :func:`split`; ``--plain`` for a split that does not). For each way
round (A → B, then B → A):

1. the shipped data files are copied to a temporary folder (the shipped ones are never written:
   data/real is an evaluation set, its questions must not enter the shipped alternates), and the
   real server app runs on the copy (``server.app.create_app``, the real default model, records in
   a temporary SQLite file), driven in process through its HTTP API;
2. half B is evaluated on the served engine (before);
3. half A is replayed as users: each question is asked with ``POST /api/ask`` (recorded as any
   question is); when the labelled entry is among the alternatives shown and is not the answer,
   the user clicks it (``POST /api/ask`` with ``after``, as the page does); when the answer is
   confident and wrong (another entry, or any entry for an uncovered question), the user says 👎
   (``POST /api/feedback``);
4. ``qa suggest``'s listing is built from those records (every suggestion, minimum count 1);
5. the maintainer accepts the suggestions whose entry is the labelled entry of every phrasing they
   would add, and rejects the others: data/real's labels stand for the maintainer, who reads each
   question and knows which entry answers it (a refused uncovered question guessed to its nearest
   entry is rejected, and so is a group that mixes questions of two entries);
6. the server reloads (``POST /admin/reload?wait=true``: the data hash changed, the index is
   rebuilt) and half B is evaluated again (after).

Figures on half B: top-1 and recall@3 over its covered questions, wrong (answered confidently with
another entry) over the covered ones, and refused-uncovered (uncovered questions refused). The same
figures on the replayed half itself show that the accepted phrasings are served.

Usage: .venv/bin/python scripts/suggest_gain.py [--seed 9] [--seeds N] [--plain | --by-question] [--model NAME]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa import evaluate, suggest  # noqa: E402
from qa.lint import normalise_phrase  # noqa: E402
from qa.records.recorder import utcnow  # noqa: E402

DATA_FILES = ("alternates.yaml", "translations.yaml", "out_of_scope.yaml", "glossary.tsv", "terms.txt",
              "common_names.txt")
TOKEN = "suggest-gain"


def read_real(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split(rows: list[dict[str, Any]], seed: int, stratified: bool = True
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two halves of the threads (sources), shuffled with ``seed``; each thread's rows stay in one half.

    ``stratified``: the threads of an entry that has covered rows in several threads are dealt to the
    two halves in turn (most of data/real's entries have one thread only, so a plain split can leave
    no entry on both sides, and then nothing learnt on one half can show on the other); the other
    threads then go, in the shuffled order, to the half with fewer rows. Otherwise: the first half
    of the shuffled threads, and the rest.
    """
    rng = random.Random(seed)
    sources = sorted({r["source"] for r in rows})
    rng.shuffle(sources)
    if not stratified:
        first = set(sources[:len(sources) // 2])
        return [r for r in rows if r["source"] in first], [r for r in rows if r["source"] not in first]
    size = {s: sum(r["source"] == s for r in rows) for s in sources}
    threads: dict[str, list[str]] = {}
    for s in sources:
        for e in sorted({r["id"] for r in rows if r["source"] == s and r["id"] is not None}):
            threads.setdefault(e, []).append(s)
    side: dict[str, int] = {}
    for e in sorted(threads):
        turn = rng.randrange(2)
        for s in threads[e]:
            if len(threads[e]) > 1 and s not in side:
                side[s], turn = turn, 1 - turn
    count = [sum(size[s] for s in side if side[s] == k) for k in (0, 1)]
    for s in sources:
        if s not in side:
            side[s] = 0 if count[0] <= count[1] else 1
            count[side[s]] += size[s]
    return [r for r in rows if side[r["source"]] == 0], [r for r in rows if side[r["source"]] == 1]


def split_questions(rows: list[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two halves of the questions themselves: each entry's covered questions (and the uncovered ones)
    shuffled with ``seed`` and dealt to the halves in turn. One thread's title, body and pasted error
    can then fall in both halves: they are different words for one problem, as when several users
    meet the same problem, which is what suggestions are for; the thread split is the harsher test."""
    rng = random.Random(seed)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["id"] or "", []).append(r)
    halves: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        turn = rng.randrange(2)
        for r in members:
            halves[turn].append(r)
            turn = 1 - turn
    return halves


def figures(engine: Any, rows: list[dict[str, Any]]) -> tuple[dict[str, float], list[str | None]]:
    """The half's figures, and what the engine answered to each question (an entry id, or None)."""
    outcomes = evaluate.run(engine, [evaluate.Example(q=r["q"], id=r["id"], lang=r["lang"], kind=r["kind"])
                                     for r in rows])
    m = evaluate.metrics(outcomes)
    return ({"top1": m["top1"], "recall@3": m["recall@3"], "wrong": m["wrong"], "refused_uncovered": m["rejected"]},
            [o.matched for o in outcomes])


def changes(rows: list[dict[str, Any]], before: list[str | None], after: list[str | None]) -> list[str]:
    """The questions answered differently, each with its label and both answers."""
    out = []
    for r, b, a in zip(rows, before, after):
        if a != b:
            mark = "+" if a == r["id"] else "-" if b == r["id"] else "~"
            out.append(f"    {mark} {r['id'] or 'uncovered'}: {b or 'refused'} → {a or 'refused'}  "
                       f"{' '.join(r['q'].split())[:80]}")
    return out


def fmt(m: dict[str, float]) -> str:
    return (f"top-1 {m['top1']:.1%}  recall@3 {m['recall@3']:.1%}  wrong {m['wrong']:.1%}  "
            f"refused-uncovered {m['refused_uncovered']:.1%}")


def copy_data(dst: Path) -> Path:
    data = dst / "data"
    shutil.copytree(ROOT / "data" / "faq", data / "faq")
    for name in DATA_FILES:
        if (ROOT / "data" / name).exists():
            shutil.copy(ROOT / "data" / name, data / name)
    cache = ROOT / "index" / "embeddings"  # vectors already computed (keyed by model and text): a copy, read only
    if cache.is_dir():
        shutil.copytree(cache, dst / "index" / "embeddings")
    return data


def replay(client: Any, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Half A asked as users, with the clicks and 👎 they would give."""
    done = {"asked": 0, "clicks": 0, "unhelpful": 0, "refused": 0}
    for r in rows:
        resp = client.post("/api/ask", json={"question": r["q"], "top_k": 3})
        resp.raise_for_status()
        a = resp.json()
        done["asked"] += 1
        match = a["match"]["id"] if a["match"] else None
        done["refused"] += match is None
        shown = {x["id"]: x["question"] for x in a["alternatives"]}
        if r["id"] is not None and match != r["id"] and r["id"] in shown:
            click = client.post("/api/ask", json={"question": shown[r["id"]], "top_k": 3,
                                                  "after": {"answer_id": a["answer_id"], "entry_id": r["id"]}})
            click.raise_for_status()
            done["clicks"] += 1
        if match is not None and match != r["id"]:
            fb = client.post("/api/feedback", json={"answer_id": a["answer_id"], "helpful": False})
            fb.raise_for_status()
            done["unhelpful"] += 1
    return done


def maintainer(listing: suggest.Suggestions, rows: list[dict[str, Any]]
               ) -> tuple[list[tuple[suggest.Suggestion, str]], int]:
    """The suggestions a maintainer accepts (with their entry), and how many they reject: those whose
    every phrasing is labelled with the suggestion's entry (data/real's labels stand for the
    maintainer's reading of the questions)."""
    label: dict[str, set[str | None]] = {}
    for r in rows:
        label.setdefault(normalise_phrase(" ".join(r["q"].split())), set()).add(r["id"])
    chosen, rejected = [], 0
    for s in listing.suggestions:
        labels = set().union(*(label.get(normalise_phrase(p.text), {None}) for p in s.phrasings))
        if labels == {s.entry_id}:
            chosen.append((s, s.entry_id))
        else:
            rejected += 1
    return chosen, rejected


def reload(client: Any) -> dict[str, Any]:
    resp = client.post("/admin/reload?wait=true", headers={"Authorization": f"Bearer {TOKEN}"})
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    if body.get("status") != "ok":
        raise SystemExit(f"reload failed: {body}")
    return body


def one_way(name: str, train: list[dict[str, Any]], test: list[dict[str, Any]], model: str,
            verbose: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """Replays ``train``, accepts, reloads; returns the figures on ``test`` before and after."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import ServerSettings

    say = print if verbose else (lambda *a, **k: None)
    covered = sum(r["id"] is not None for r in test)
    say(f"\n== {name}: replay {len(train)} questions ({sum(r['id'] is not None for r in train)} covered) of "
        f"{len({r['source'] for r in train})} threads; evaluate on {len(test)} ({covered} covered, "
        f"{len(test) - covered} uncovered) of {len({r['source'] for r in test})} threads")
    with tempfile.TemporaryDirectory(prefix="suggest-gain-") as tmp:
        data = copy_data(Path(tmp))
        settings = ServerSettings(data_dir=data, faq_dir=None, index_dir=Path(tmp) / "index",
                                  state_dir=Path(tmp) / "state", model=model, admin_token=TOKEN,
                                  rate_limit="off", auth_failure_limit="off", record=True, watch=False,
                                  database_url=None, cache_url=None)
        app = create_app(settings)
        with TestClient(app) as client:
            deadline = time.monotonic() + 300
            while client.get("/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server did not get ready: {client.get('/readyz').text}")
                time.sleep(0.2)
            holder = app.state.holder
            before, answered = figures(holder.engine, test)
            fit_before, _ = figures(holder.engine, train)
            start = utcnow() - timedelta(minutes=1)
            t0 = time.perf_counter()
            done = replay(client, train)
            assert app.state.recorder.flush(30), "the records were not written"
            listing = suggest.build_suggestions(app.state.records_db, holder.engine.kb, since=start,
                                                encoder=holder.engine.encoder)
            n_guess = sum(s.guessed for s in listing.suggestions)
            say(f"replayed in {time.perf_counter() - t0:.1f} s: {done['asked']} asked, {done['refused']} refused, "
                f"{done['clicks']} clicks, {done['unhelpful']} 👎; qa suggest lists {len(listing.suggestions)} "
                f"suggestions ({len(listing.suggestions) - n_guess} confirmed by a click, {n_guess} guesses), "
                f"{sum(len(s.phrasings) for s in listing.suggestions)} phrasings")
            chosen, rejected = maintainer(listing, train)
            accepted = suggest.accept(chosen, data)
            result = reload(client)
            after, answered_after = figures(holder.engine, test)
            fit_after, _ = figures(holder.engine, train)
            delta = after["top1"] - before["top1"]
            say(f"accepted {len(chosen)}, rejected {rejected}; "
                f"{len(accepted.added)} phrasings added; reloaded (index rebuilt) in {result['seconds']:.1f} s")
            for sid, entry_id, text in accepted.added:
                say(f"    {sid} {entry_id} + {text[:90]}")
            say(f"  the other half, before: {fmt(before)}")
            say(f"  the other half, after:  {fmt(after)}   [top-1 {delta * covered:+.0f} of {covered}]")
            say("\n".join(changes(test, answered, answered_after)) or "    no answer on the other half changed")
            say(f"  (the replayed half itself, before: {fmt(fit_before)})")
            say(f"  (the replayed half itself, after:  {fmt(fit_after)})")
    return before, after


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=9, help="the split's seed (default 9)")
    p.add_argument("--seeds", type=int, default=0, metavar="N",
                   help="then also the split with seeds 0..N-1, one summary line each (default 0: none)")
    p.add_argument("--model", default="multilingual-e5-small")
    p.add_argument("--plain", action="store_true", help="split the threads in two without spreading each "
                   "entry's threads over both halves (see split)")
    p.add_argument("--by-question", action="store_true", help="split the questions, not the threads: a thread's "
                   "questions may fall in both halves (see split_questions)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    rows = read_real(ROOT / "data" / "real" / "real.jsonl")

    def describe(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        a, b = split_questions(rows, seed) if args.by_question else split(rows, seed, stratified=not args.plain)
        shared = {r["id"] for r in a if r["id"]} & {r["id"] for r in b if r["id"]}
        return a, b, (f"half A {len(a)} questions, half B {len(b)}; entries with covered questions in both halves: "
                      f"{len(shared)} ({sum(r['id'] in shared for r in rows)} questions)")

    a, b, said = describe(args.seed)
    how = ("by question (each entry's questions dealt to both halves)" if args.by_question else
           f"by thread ({'plain' if args.plain else 'each entry’s threads spread over both halves'})")
    print(f"data/real: {len(rows)} questions, {sum(r['id'] is not None for r in rows)} covered; split {how} "
          f"with seed {args.seed}: {said}")
    one_way("A → B", a, b, args.model)
    one_way("B → A", b, a, args.model)
    if args.seeds:
        print(f"\nseeds 0..{args.seeds - 1}: top-1 on the other half before → after (both ways)")
        total = [0.0, 0.0, 0]
        for seed in range(args.seeds):
            a, b, said = describe(seed)
            parts = []
            for train, test in ((a, b), (b, a)):
                before, after = one_way("", train, test, args.model, verbose=False)
                n = sum(r["id"] is not None for r in test)
                total[0] += before["top1"] * n
                total[1] += after["top1"] * n
                total[2] += n
                parts.append(f"{before['top1'] * n:.0f} → {after['top1'] * n:.0f} of {n}")
            print(f"  seed {seed}: {'; '.join(parts)}  ({said})", flush=True)
        print(f"  all: {total[0]:.0f} → {total[1]:.0f} right of {total[2]} "
              f"({total[0] / total[2]:.1%} → {total[1] / total[2]:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
