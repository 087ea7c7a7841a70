"""Ranking quality of each signal alone and of the fusion, on data/eval (no threshold).

Usage: python scripts/ablation.py [EVAL FILES…]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.evaluate import read_examples  # noqa: E402
from qa.search import Engine, FusionWeights  # noqa: E402
from qa.settings import Settings  # noqa: E402

VARIANTS = {
    "BM25 over jieba tokens (question+alternates+answer)": FusionWeights(question=0.0, answer=0.0, lexical=1.0),
    "dense, question+answer passage only": FusionWeights(question=0.0, answer=1.0, lexical=0.0),
    "dense, question and alternates only": FusionWeights(question=1.0, answer=0.0, lexical=0.0),
    "hybrid (the default weights)": FusionWeights(),
}


def main() -> None:
    s = Settings(cache_size=0)
    base = Engine.from_settings(s)
    examples = [x for x in read_examples([Path(p) for p in sys.argv[1:]] or [s.data_dir / "eval"]) if x.id]
    print(f"{len(examples)} in-domain questions; rank-1 and recall@3 with no threshold\n")
    for name, w in VARIANTS.items():
        engine = Engine(base.kb, base.encoder, base.dense, cache_size=0, fusion=w)
        ranks = []
        for x in examples:
            ids = [c.id for c in engine.signals(x.q).candidates]
            ranks.append(ids.index(x.id) + 1 if x.id in ids else 99)
        r1 = sum(r == 1 for r in ranks) / len(ranks)
        r3 = sum(r <= 3 for r in ranks) / len(ranks)
        print(f"{name:<55} rank-1 {r1:6.1%}   recall@3 {r3:6.1%}")


if __name__ == "__main__":
    main()
