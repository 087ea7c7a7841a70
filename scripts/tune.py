"""Chooses the confidence curve (``level``, ``margin_gain``, ``gap_gain`` of qa.search.ConfidenceCurve).

Computes each evaluation question's candidates once, then grid-searches the curve for the
most right answers plus rejections, with in-domain false rejection held at or below
``--max-false-reject``. Rejecting off-topic questions counts fully, rejecting OpenKruise
topics the FAQ lacks counts ``--uncovered-weight`` (the bars are 95% and 60%).

It also prints a k-fold cross-validated estimate (choose on k-1 folds, score the held-out
fold), which is the honest figure for questions the choice has not seen.

Usage: python scripts/tune.py [EVAL FILES…] [--folds 5]
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.evaluate import read_examples  # noqa: E402
from qa.search import ConfidenceCurve, Engine, Signals, confidence, confidence_logit  # noqa: E402
from qa.settings import Settings  # noqa: E402

GRID = list(itertools.product(np.round(np.arange(0.76, 0.92, 0.005), 3), (0, 10, 20, 30, 40, 60, 80),
                              (0, 20, 40, 80, 120), (0.0, 1.0, 2.0, 4.0, 6.0, 8.0)))


Row = tuple[Signals, str | None, str]  # the question's signals, the expected id (None: reject), the kind


def evaluate(rows: list[Row], w: ConfidenceCurve) -> dict[str, float]:
    pos = [(s, e) for s, e, _ in rows if e is not None]
    answered = [confidence(s, w) >= 0.5 for s, _ in pos]
    out = {"top1": float(np.mean([a and s.candidates[0].id == e for a, (s, e) in zip(answered, pos)])),
           "false_reject": 1 - float(np.mean(answered))}
    for kind in ("offtopic", "uncovered"):
        neg = [s for s, e, k in rows if e is None and k == kind]
        out[kind] = float(np.mean([confidence(s, w) < 0.5 for s in neg])) if neg else 1.0
    return out


def choose(rows: list[Row], base: ConfidenceCurve, max_fr: float, unc_w: float) -> ConfidenceCurve:
    best, best_w = -1.0, base
    for level, mg, gg, ug in GRID:
        w = replace(base, slope=40.0, level=float(level), margin_gain=float(mg), gap_gain=float(gg), unknown_gain=ug)
        m = evaluate(rows, w)
        if m["false_reject"] > max_fr:
            continue
        score = m["top1"] + m["offtopic"] + unc_w * m["uncovered"]
        if score > best:
            best, best_w = score, w
    return best_w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--max-false-reject", type=float, default=0.03)
    ap.add_argument("--uncovered-weight", type=float, default=0.6)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    s = Settings(cache_size=0)
    engine = Engine.from_settings(s)
    examples = read_examples([Path(f) for f in args.files] or [s.data_dir / "eval"])
    rows: list[Row] = [(engine.signals(x.q), x.id, x.kind) for x in examples]
    print(f"current: {engine.curve}\n  {evaluate(rows, engine.curve)}")
    w = choose(rows, engine.curve, args.max_false_reject, args.uncovered_weight)
    print(f"chosen on all {len(rows)}: level={w.level} margin_gain={w.margin_gain} gap_gain={w.gap_gain} "
          f"unknown_gain={w.unknown_gain}\n"
          f"  {evaluate(rows, w)}")
    # Temperature: divide the whole curve by T (the 0.5 boundary stays put) so that a
    # confidence of p is right about p of the time (least log-loss on "the match is right").
    z = np.array([confidence_logit(s, w) for s, _, _ in rows])
    right = np.array([1.0 if e is not None and s.candidates[0].id == e else 0.0 for s, e, _ in rows])

    def log_loss(t: float) -> float:
        p = np.clip(1 / (1 + np.exp(-np.clip(z / t, -50, 50))), 1e-6, 1 - 1e-6)
        return float(-np.mean(right * np.log(p) + (1 - right) * np.log(1 - p)))

    t = min(np.arange(0.5, 20.01, 0.25), key=log_loss)
    print(f"temperature {t:.2f} (log-loss {log_loss(1.0):.3f} → {log_loss(t):.3f}): slope={w.slope / t:.1f} "
          f"margin_gain={w.margin_gain / t:.1f} gap_gain={w.gap_gain / t:.1f} unknown_gain={w.unknown_gain / t:.2f} "
          f"(level stays {w.level})")
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    folds = [order[i::args.folds] for i in range(args.folds)]
    held: list[dict[str, float]] = []
    for fold in folds:
        test = set(fold)
        wk = choose([r for i, r in enumerate(rows) if i not in test], engine.curve, args.max_false_reject,
                    args.uncovered_weight)
        held.append({**evaluate([rows[i] for i in fold], wk), "n": len(fold)})
    total = sum(h["n"] for h in held)
    cv = {m: sum(h[m] * h["n"] for h in held) / total for m in ("top1", "false_reject", "offtopic", "uncovered")}
    print(f"{args.folds}-fold cross-validated (chosen without the fold): "
          + ", ".join(f"{k} {v:.1%}" for k, v in cv.items()))


if __name__ == "__main__":
    main()
