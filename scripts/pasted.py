"""Quality and cost of questions pasted among a pod's log (what ``qa.question.for_model`` is for).

Each in-domain question of the chosen sets is put among about 1,300 characters of kubelet and
controller lines (timestamps, pod hashes, addresses: the noise of a real paste), at a place that
depends on the question, and asked through the engine. Prints top-1 and the engine's p50 per set,
for the model budget in use and for any budgets given with ``--budget``.

    .venv/bin/python scripts/pasted.py                 # data/eval and data/holdout
    .venv/bin/python scripts/pasted.py --budget 64 48  # compare budgets
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOISE = [
    "2024-03-12T08:14:{s:02d}.118Z I0312 08:14:{s:02d}.118234       1 controller.go:{n}] syncing pod "
    "web-7d9f8b6c5-x7k2{d} in namespace default resourceVersion={rv}",
    "I0312 08:15:{s:02d}.000000       1 event.go:{n}] pod web-7d9f8b6c5-x7k2p status Running node 10.1.2.{d}",
    "2024-03-12T08:16:{s:02d}Z Normal Scheduled pod/api-6c9d5f7b8-q{d}zt Successfully assigned default/api to node-{d}",
    "2024-03-12T08:16:{s:02d}Z Normal Pulled pod/api-6c9d5f7b8-q{d}zt Container image \"nginx:1.25.{d}\" present",
]


def pasted(question: str) -> str:
    """``question`` among ~1,300 characters of log lines, at a place that depends on it."""
    seed = int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16)
    lines = [NOISE[(seed + i) % len(NOISE)].format(s=(seed + 7 * i) % 60, n=100 + i, d=(seed + i) % 10,
                                                   rv=48213000 + i) for i in range(10)]
    lines.insert(seed % (len(lines) + 1), question)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["eval", "holdout"], help="folders of data/")
    ap.add_argument("--budget", type=int, nargs="*", default=[], help="model budgets to compare")
    args = ap.parse_args()

    import qa.question
    from qa.evaluate import read_examples
    from qa.search import Engine
    from qa.settings import Settings

    engine = Engine.from_settings(Settings())
    budgets = args.budget or [qa.question.MODEL_BUDGET]
    default = qa.question.for_model.__defaults__
    for budget in budgets:
        qa.question.for_model.__defaults__ = (budget, *default[1:])  # type: ignore[index]
        for folder in args.sets:
            examples = [e for e in read_examples([ROOT / "data" / folder]) if e.id]
            right, times = 0, []
            for e in examples:
                text = pasted(e.q)
                start = time.perf_counter()
                answer = engine.ask(text)
                times.append(time.perf_counter() - start)
                top = answer.match.id if answer.match else None
                right += top == e.id
            print(f"budget {budget}: data/{folder}: {len(examples)} pasted questions, "
                  f"top-1 {100 * right / len(examples):.1f}%, engine.ask p50 {1000 * statistics.median(times):.0f} ms")
    qa.question.for_model.__defaults__ = default
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
