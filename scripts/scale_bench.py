"""Scale benchmark: the index at 100, 1,000 and 5,000 FAQ entries, with the real default model.

For each size it writes a synthetic FAQ into a work folder: entry i is real entry i mod 23 with
" (variant i)" after its question, its answer's paragraphs shuffled, 8 of its alternates (each
marked with the variant) and its English translation likewise, so every entry has 12 distinct,
realistic texts (the real FAQ's 140 known-gap examples come on top). Then, each step in a fresh
process so that memory is the step's own:

- build: a full build (KnowledgeBase.load + load_or_build on an empty folder); one answer edited;
  the rebuild (the same two calls, with the embedding cache) and its share of the full build;
- serve: the engine opened from the saved index, ~200 questions from data/eval asked without the
  answer cache (p50/p99), resident memory;
- faiss: exact (IndexFlatIP) against HNSW (IndexHNSWFlat, inner product) on the built vectors:
  build time, single-question search latency, recall@10 against exact search.

"real" is today's FAQ (data/, copied). Not a test: nothing here passes or fails.

Usage: python scripts/scale_bench.py [--sizes real,100,1000,5000] [--questions 200]
       [--work DIR] [--hnsw-from N] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PER_ENTRY_ALTERNATES = 8
DATA_FILES = ("glossary.tsv", "terms.txt", "common_names.txt", "out_of_scope.yaml")


# --------------------------------------------------------------------------- synthetic data


def _blocks(markdown: str) -> list[str]:
    """Paragraphs of a markdown answer, a fenced code block kept whole."""
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        m = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
            current.append(line)
            continue
        if fence is None and not line.strip():
            if current:
                blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _shuffled(markdown: str, rng: random.Random) -> str:
    blocks = _blocks(markdown)
    rng.shuffle(blocks)
    return "\n\n".join(blocks)


def write_synthetic(data_dir: Path, n: int) -> None:
    """A data folder with ``n`` entries made from the real FAQ (see the module docstring)."""
    from qa.contract import to_markdown
    from qa.faq import load_faq
    from qa.knowledge import KnowledgeBase

    real = KnowledgeBase.load(ROOT / "data")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    (data_dir / "faq").mkdir(parents=True)
    for name in DATA_FILES:
        if (ROOT / "data" / name).exists():
            shutil.copy(ROOT / "data" / name, data_dir / name)
    lines = ["# 常见问题解答（合成）", ""]
    plan = []
    for i in range(n):
        base = real.entries[i % len(real.entries)]
        rng = random.Random(i)
        question = f"{base.question.rstrip()} (variant {i})"
        lines += [f"## {base.section or 'FAQ'} {i}", "", f"#### Q：{question}", "", _shuffled(base.markdown, rng), ""]
        alternates = real.alternates.get(base.id, [])
        alternates = rng.sample(alternates, min(PER_ENTRY_ALTERNATES, len(alternates)))
        plan.append((base, rng, [f"{a} (variant {i})" for a in alternates], i))
    faq = data_dir / "faq" / "synthetic.md"
    faq.write_text("\n".join(lines), encoding="utf-8")
    entries = load_faq([faq]).entries
    assert len(entries) == n, (len(entries), n)
    alt_lines, tr_lines = [], []
    for entry, (base, rng, alternates, i) in zip(entries, plan):
        if alternates:
            alt_lines.append(f'"{entry.id}":')
            alt_lines += [f"  - {json.dumps(a, ensure_ascii=False)}" for a in alternates]
        t = real.translations.get(base.id)
        if t is not None:
            tr_lines.append(f'"{entry.id}":')
            tr_lines.append(f"  question: {json.dumps(f'{t.question} (variant {i})', ensure_ascii=False)}")
            answer = _shuffled(to_markdown(t.answer), rng)
            tr_lines.append("  answer: |")
            tr_lines += [f"    {row}" if row.strip() else "" for row in answer.splitlines()]
    (data_dir / "alternates.yaml").write_text("\n".join(alt_lines) + "\n", encoding="utf-8")
    (data_dir / "translations.yaml").write_text("\n".join(tr_lines) + "\n", encoding="utf-8")


def write_real(data_dir: Path) -> None:
    """A copy of today's data folder."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    shutil.copytree(ROOT / "data", data_dir, ignore=shutil.ignore_patterns("eval", "holdout", "real"))


def edit_one_answer(data_dir: Path) -> None:
    """Adds a sentence to the answer of the middle entry of the first FAQ file (a maintainer's edit)."""
    faq = sorted((data_dir / "faq").rglob("*.md"))[0]
    text = faq.read_text(encoding="utf-8")
    questions = [m.end() for m in re.finditer(r"^#### .*$", text, flags=re.M)]
    after = questions[len(questions) // 2]
    following = re.compile(r"^#{1,6} ", flags=re.M).search(text, after)
    cut = following.start() if following else len(text)
    faq.write_text(text[:cut].rstrip("\n") + "\n\n另外，升级前请先备份相关资源。\n\n" + text[cut:], encoding="utf-8")


# --------------------------------------------------------------------------- steps (each in its own process)


class CountingEncoder:
    """The encoder, counting the texts it encodes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, 0

    def encode(self, texts: Any, kind: Any = "passage") -> Any:
        self.texts += len(texts)
        return self.inner.encode(texts, kind)


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


def _peak_mb() -> float:
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _folder_mb(folder: Path, pattern: str = "*") -> float:
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file()) / 2**20


def step_build(work: Path, size: str) -> dict[str, Any]:
    from qa.encoders import load_encoder
    from qa.knowledge import KnowledgeBase
    from qa.search import load_or_build
    from qa.settings import Settings

    data_dir, index_dir = work / size / "data", work / size / "index"
    write_real(data_dir) if size == "real" else write_synthetic(data_dir, int(size))
    if index_dir.exists():
        shutil.rmtree(index_dir)
    encoder = CountingEncoder(load_encoder(Settings().model))

    def build() -> tuple[float, Any, KnowledgeBase, int]:
        before = encoder.texts
        start = time.perf_counter()
        kb = KnowledgeBase.load(data_dir)
        dense, built = load_or_build(kb, encoder, index_dir)  # type: ignore[arg-type]
        assert built
        return time.perf_counter() - start, dense, kb, encoder.texts - before

    full_s, dense, kb, full_texts = build()
    edit_one_answer(data_dir)
    edit_s, dense2, kb2, edit_texts = build()
    assert len(dense2) == len(dense)
    return {"size": size, "entries": len(kb.entries), "vectors": len(dense), "index_type": dense.kind,
            "full_build_s": full_s, "full_texts_encoded": full_texts, "rebuild_s": edit_s,
            "rebuild_texts_encoded": edit_texts, "rebuild_share": edit_s / full_s,
            "index_mb": _folder_mb(index_dir), "cache_mb": _folder_mb(index_dir / "embeddings"),
            "build_peak_rss_mb": _peak_mb()}


def _questions(n: int) -> list[str]:
    from qa.evaluate import read_examples

    seen: dict[str, None] = {}
    for ex in read_examples([ROOT / "data" / "eval"]):
        seen.setdefault(ex.q, None)
    qs = list(seen)
    return (qs * (n // max(1, len(qs)) + 1))[:n]


def step_serve(work: Path, size: str, n_questions: int) -> dict[str, Any]:
    import numpy as np

    from qa.encoders import load_encoder
    from qa.search import Engine
    from qa.settings import Settings

    rss0 = _rss_mb()
    encoder = load_encoder(Settings().model)
    start = time.perf_counter()
    settings = Settings(data_dir=work / size / "data", index_dir=work / size / "index", cache_size=0)
    engine = Engine.from_settings(settings, encoder=encoder)
    open_s = time.perf_counter() - start
    assert not engine.built, "the serve step must load the saved index"
    engine.warm_up()
    questions = _questions(n_questions)
    for q in questions[:10]:
        engine.ask(q)
    times = []
    for q in questions:
        t = time.perf_counter()
        engine.ask(q)
        times.append((time.perf_counter() - t) * 1000)
    search_ms = []
    vectors = encoder.encode(questions[:50], "query")
    for v in vectors:
        t = time.perf_counter()
        engine._search("x", v[None, :])  # the engine's work after encoding (dense, BM25, fusion)
        search_ms.append((time.perf_counter() - t) * 1000)
    return {"size": size, "engine_open_s": open_s, "ask_p50_ms": float(np.percentile(times, 50)),
            "ask_p99_ms": float(np.percentile(times, 99)), "after_encoding_p50_ms": float(np.percentile(search_ms, 50)),
            "questions": len(times), "rss_mb": _rss_mb(), "rss_before_mb": rss0, "index_type": engine.dense.kind}


def step_faiss(work: Path, size: str, n_questions: int) -> dict[str, Any]:
    import faiss
    import numpy as np

    from qa import index as qindex
    from qa.encoders import load_encoder
    from qa.settings import Settings

    encoder = load_encoder(Settings().model)
    saved = faiss.read_index(str(work / size / "index" / qindex.VECTORS))
    x = np.ascontiguousarray(saved.reconstruct_n(0, saved.ntotal))
    q = np.ascontiguousarray(encoder.encode(_questions(n_questions), "query"))
    cores = os.cpu_count() or 1

    def timed_search(index: Any, k: int, threads: int = 1) -> tuple[float, float, np.ndarray]:
        """One question at a time, on one FAISS thread as DenseIndex.search does."""
        faiss.omp_set_num_threads(threads)
        for v in q[:5]:
            index.search(v[None, :], k)
        ms, ids = [], []
        for v in q:
            t = time.perf_counter()
            _, i = index.search(v[None, :], k)
            ms.append((time.perf_counter() - t) * 1000)
            ids.append(i[0])
        return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), np.array(ids)

    default_k = len(x) if len(x) <= qindex.SEARCH_ALL_UP_TO else qindex.SEARCH_K
    flat = faiss.IndexFlatIP(x.shape[1])
    t = time.perf_counter()
    flat.add(x)
    out: dict[str, Any] = {"size": size, "vectors": len(x), "default_k": default_k,
                           "flat_build_s": time.perf_counter() - t}
    p50, p99, exact10 = timed_search(flat, 10)
    out.update(flat_k10_p50_ms=p50, flat_k10_p99_ms=p99)
    p50, p99, exact_kdef = timed_search(flat, default_k)
    out.update(flat_kdef_p50_ms=p50, flat_kdef_p99_ms=p99)
    p50, p99, _ = timed_search(flat, 10, threads=cores)
    out.update(flat_k10_all_threads_p50_ms=p50, flat_k10_all_threads_p99_ms=p99)
    faiss.omp_set_num_threads(cores)  # the build uses every core, as load_or_build does
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(x.shape[1], qindex.HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = qindex.HNSW_EF_CONSTRUCTION
    hnsw.add(x)
    out["hnsw_build_s"] = time.perf_counter() - t
    out["hnsw"] = {}
    for ef in (32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        p50, p99, got = timed_search(hnsw, 10)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact10)]))
        top1 = float(np.mean(got[:, 0] == exact10[:, 0]))
        out["hnsw"][ef] = {"k10_p50_ms": p50, "k10_p99_ms": p99, "recall10": recall, "top1_agree": top1}
    hnsw.hnsw.efSearch = max(qindex.HNSW_EF_SEARCH, default_k)  # as DenseIndex.search does
    p50, p99, got = timed_search(hnsw, default_k)
    # what the engine sees: the first 10 of its k=default results, and the whole set
    out.update(hnsw_kdef_p50_ms=p50, hnsw_kdef_p99_ms=p99,
               hnsw_kdef_recall10=float(np.mean([len(set(a[:10]) & set(b)) / 10 for a, b in zip(got, exact10)])),
               hnsw_kdef_recall_k=float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, exact_kdef)])))
    return out


# --------------------------------------------------------------------------- driver


def run_step(step: str, work: Path, size: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--step", step, "--size", size, "--work", str(work),
           "--questions", str(args.questions)]
    if args.hnsw_from is not None:
        cmd += ["--hnsw-from", str(args.hnsw_from)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"step {step} {size} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="real,100,1000,5000", help="comma-separated: 'real' and/or entry counts")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qa-scale-bench"), help="work folder (kept)")
    ap.add_argument("--hnsw-from", type=int, default=None, help="override qa.index.HNSW_FROM (vectors)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--tables", type=Path, default=None, help="only print the tables of a results JSON file")
    ap.add_argument("--step", choices=["build", "serve", "faiss"], help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.hnsw_from is not None:
        import qa.index

        qa.index.HNSW_FROM = args.hnsw_from
    if args.tables:
        print_tables(json.loads(args.tables.read_text(encoding="utf-8")))
        return 0
    if args.step:
        if args.step == "build":
            result = step_build(args.work, args.size)
        elif args.step == "serve":
            result = step_serve(args.work, args.size, args.questions)
        else:
            result = step_faiss(args.work, args.size, args.questions)
        print(json.dumps(result))
        return 0

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench import machine

    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    results: list[dict[str, Any]] = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        t0 = time.perf_counter()
        row = {"build": run_step("build", args.work, size, args)}
        print(f"[{size}] build: {json.dumps(row['build'])}", flush=True)
        row["serve"] = run_step("serve", args.work, size, args)
        print(f"[{size}] serve: {json.dumps(row['serve'])}", flush=True)
        row["faiss"] = run_step("faiss", args.work, size, args)
        print(f"[{size}] faiss: {json.dumps(row['faiss'])}", flush=True)
        row["wall_s"] = time.perf_counter() - t0
        results.append(row)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print_tables(results)
    return 0


def print_tables(results: list[dict[str, Any]]) -> None:
    print()
    print("| entries | vectors | full build s | rebuild after one edit s (texts encoded) | rebuild / full "
          "| index MB (+ cache MB) | RSS serving MB | build peak MB | ask p50 / p99 ms | index |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        b, s = r["build"], r["serve"]
        print(f"| {b['entries']:,} | {b['vectors']:,} | {b['full_build_s']:.1f} | {b['rebuild_s']:.2f} "
              f"({b['rebuild_texts_encoded']}) | {100 * b['rebuild_share']:.2f}% | {b['index_mb']:.1f} "
              f"(+{b['cache_mb']:.1f}) | {s['rss_mb']:.0f} | {b['build_peak_rss_mb']:.0f} "
              f"| {s['ask_p50_ms']:.1f} / {s['ask_p99_ms']:.1f} | {b['index_type']} |")
    print()
    print("FAISS, one question at a time on one thread (as DenseIndex.search); recall@10 against exact search")
    print()
    print("| vectors | flat k=10 p50 ms (all threads) | flat k=default p50 ms (k) | HNSW build s "
          "| HNSW ef=64 k=10 p50 ms, recall@10 | ef=128 | ef=256 | HNSW k=default p50 ms, recall@10, recall@k "
          "| engine after encoding p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        f, s = r["faiss"], r["serve"]
        h = {int(k): v for k, v in f["hnsw"].items()}
        cells = [f"{h[ef]['k10_p50_ms']:.3f}, {h[ef]['recall10']:.4f}" for ef in (64, 128, 256)]
        all_threads = f.get("flat_k10_all_threads_p50_ms")
        flat10 = f"{f['flat_k10_p50_ms']:.3f}" + (f" ({all_threads:.3f})" if all_threads is not None else "")
        kdef = f"{f['hnsw_kdef_p50_ms']:.3f}"
        if "hnsw_kdef_recall10" in f:
            kdef += f", {f['hnsw_kdef_recall10']:.4f}, {f['hnsw_kdef_recall_k']:.4f}"
        print(f"| {f['vectors']:,} | {flat10} | {f['flat_kdef_p50_ms']:.3f} ({f['default_k']}) "
              f"| {f['hnsw_build_s']:.2f} | {' | '.join(cells)} | {kdef} | {s['after_encoding_p50_ms']:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
