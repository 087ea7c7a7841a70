"""Dumps the confidence features of every evaluation question (for choosing the threshold).

Usage: python scripts/features.py [EVAL FILES…] > features.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qa.encoders import load_encoder
from qa.evaluate import read_examples
from qa.search import Engine
from qa.settings import Settings


def main() -> None:
    s = Settings()
    engine = Engine.open(s.data_dir, s.index_dir, load_encoder(s.model), faq_dir=s.faq_dir, cache_size=0)
    examples = read_examples([Path(p) for p in sys.argv[1:]] or [s.data_dir / "eval"])
    vectors = engine.encoder.encode([x.q for x in examples], "query")
    scores, idx = engine.dense.search(vectors)
    for x, sc, ix in zip(examples, scores, idx):
        ranked, oos, unknown = engine.signals(engine._clean(x.q), sc, ix)
        top, second = ranked[0], ranked[1]
        print(json.dumps({"q": x.q, "id": x.id, "kind": x.kind, "lang": x.lang, "pred": top.id,
                          "fused": top.fused, "second": second.fused, "qcos": top.question, "acos": top.answer,
                          "lex": top.lexical, "oos": oos, "unknown": unknown}, ensure_ascii=False))


if __name__ == "__main__":
    main()
