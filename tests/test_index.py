"""qa.index: the dense index's save/load round trip, its integrity checks, atomic writes, and rebuilds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest
from tiny_faq import Q_CPU, Q_SIDECAR, TINY_MD, TINY_QUESTIONS, open_engine

from qa import embeddings as emb
from qa import index as qindex
from qa.embeddings import EmbeddingCache, text_key
from qa.encoders import HashEncoder
from qa.errors import IndexCorrupt
from qa.faq import entry_id
from qa.index import (
    FORMAT_VERSION,
    MANIFEST,
    PASSAGES,
    VECTORS,
    DenseIndex,
    Passage,
    atomic_write,
    remove_stale_temporary_files,
)
from qa.knowledge import KnowledgeBase
from qa.search import load_or_build

FILES = {MANIFEST, VECTORS, PASSAGES}
FOLDER_FILES = FILES | {emb.FOLDER}  # what load_or_build leaves: the index and its embedding cache
CACHE_FILES = {emb.MANIFEST, emb.DATA}


@pytest.fixture
def kb(tiny_data: Path) -> KnowledgeBase:
    return KnowledgeBase.load(tiny_data)


@pytest.fixture
def built(kb: KnowledgeBase) -> DenseIndex:
    enc = HashEncoder()
    return DenseIndex.build(kb.passages(), enc.encode, enc.name, kb.data_hash)


@pytest.fixture
def saved(built: DenseIndex, tmp_path: Path) -> Path:
    folder = tmp_path / "idx"
    built.save(folder)
    return folder


def manifest_of(folder: Path) -> dict[str, object]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def write_manifest(folder: Path, **changes: object) -> None:
    m = manifest_of(folder)
    m.update(changes)
    (folder / MANIFEST).write_text(json.dumps(m), encoding="utf-8")


def rewrite_file(folder: Path, name: str, data: bytes, fix_checksum: bool) -> None:
    """Replaces a file of the index; with ``fix_checksum`` the manifest is updated to match it."""
    (folder / name).write_bytes(data)
    if fix_checksum:
        m = manifest_of(folder)
        m["files"][name] = hashlib.sha256(data).hexdigest()  # type: ignore[index]
        (folder / MANIFEST).write_text(json.dumps(m), encoding="utf-8")


def queries() -> np.ndarray:
    return HashEncoder().encode([Q_CPU, Q_SIDECAR, "kruise-manager 日志"], "query")


# --------------------------------------------------------------------------- build, save, load


def test_build_encodes_every_passage(built: DenseIndex, kb: KnowledgeBase) -> None:
    assert len(built) == len(kb.passages()) == 15
    assert built.dim == 256
    assert built.model == "hash-256"
    assert built.passages == kb.passages()
    # question-like passages are found by their own text with cosine 1
    scores, idx = built.search(HashEncoder().encode([Q_CPU], "query"), k=1)
    assert built.passages[int(idx[0, 0])] == Passage(entry_id(Q_CPU), "question", Q_CPU)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_build_reports_progress(kb: KnowledgeBase) -> None:
    seen: list[int] = []
    enc = HashEncoder()
    DenseIndex.build(kb.passages(), enc.encode, enc.name, "h", batch_size=4, progress=seen.append)
    assert seen == [4, 4, 4, 3]


def test_save_writes_the_three_files_and_a_manifest(saved: Path, built: DenseIndex) -> None:
    assert {p.name for p in saved.iterdir()} == FILES
    m = manifest_of(saved)
    assert (m["format"], m["model"], m["dim"], m["count"], m["data_hash"]) == (
        FORMAT_VERSION, "hash-256", 256, 15, built.data_hash)
    assert m["files"] == {name: hashlib.sha256((saved / name).read_bytes()).hexdigest() for name in (VECTORS, PASSAGES)}


def test_save_then_load_round_trips(saved: Path, built: DenseIndex) -> None:
    loaded = DenseIndex.load(saved, built.model, built.data_hash)
    assert loaded.passages == built.passages
    assert (len(loaded), loaded.dim, loaded.model, loaded.data_hash) == (15, 256, "hash-256", built.data_hash)
    s1, i1 = built.search(queries())
    s2, i2 = loaded.search(queries())
    assert np.array_equal(i1, i2)
    assert np.array_equal(s1, s2)
    assert i1.shape == (3, 15)
    # k is capped at the index size
    _, i3 = loaded.search(queries(), k=100)
    assert i3.shape == (3, 15)


# --------------------------------------------------------------------------- integrity


def test_load_without_manifest_raises(saved: Path, built: DenseIndex) -> None:
    (saved / MANIFEST).unlink()
    with pytest.raises(IndexCorrupt, match="manifest"):
        DenseIndex.load(saved, built.model, built.data_hash)


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", "null"])
def test_load_with_unreadable_manifest_raises(saved: Path, built: DenseIndex, content: str) -> None:
    (saved / MANIFEST).write_text(content, encoding="utf-8")
    with pytest.raises(IndexCorrupt, match="manifest"):
        DenseIndex.load(saved, built.model, built.data_hash)


def test_load_of_a_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(IndexCorrupt):
        DenseIndex.load(tmp_path / "nothing", "hash-256", "x")


def test_load_with_another_model_raises(saved: Path, built: DenseIndex) -> None:
    with pytest.raises(IndexCorrupt, match="hash-256"):
        DenseIndex.load(saved, "hash-128", built.data_hash)


def test_load_with_other_data_raises(saved: Path, built: DenseIndex) -> None:
    with pytest.raises(IndexCorrupt, match="changed"):
        DenseIndex.load(saved, built.model, "0123456789abcdef")


@pytest.mark.parametrize("fmt", [FORMAT_VERSION - 1, FORMAT_VERSION + 1, None, str(FORMAT_VERSION)])
def test_load_of_another_format_raises(saved: Path, built: DenseIndex, fmt: object) -> None:
    write_manifest(saved, format=fmt)
    with pytest.raises(IndexCorrupt, match="format"):
        DenseIndex.load(saved, built.model, built.data_hash)


@pytest.mark.parametrize("keep", [0, 10, 1000, -1])
def test_load_of_a_truncated_vectors_file_raises(saved: Path, built: DenseIndex, keep: int) -> None:
    data = (saved / VECTORS).read_bytes()
    rewrite_file(saved, VECTORS, data[:keep], fix_checksum=False)
    with pytest.raises(IndexCorrupt, match="checksum"):
        DenseIndex.load(saved, built.model, built.data_hash)


@pytest.mark.parametrize("keep", [0, 10, 1000, -1])
def test_truncated_vectors_file_is_caught_even_with_a_matching_checksum(saved: Path, built: DenseIndex,
                                                                        keep: int) -> None:
    data = (saved / VECTORS).read_bytes()
    rewrite_file(saved, VECTORS, data[:keep], fix_checksum=True)
    with pytest.raises(IndexCorrupt, match="cannot read index"):
        DenseIndex.load(saved, built.model, built.data_hash)


def test_load_with_a_checksum_mismatch_raises(saved: Path, built: DenseIndex) -> None:
    text = (saved / PASSAGES).read_text(encoding="utf-8")
    changed = text.replace('"question"', '"alternate"', 1)
    assert len(changed) == len(text) + 1 and changed != text
    rewrite_file(saved, PASSAGES, changed.encode("utf-8"), fix_checksum=False)
    with pytest.raises(IndexCorrupt, match=f"{PASSAGES} does not match its checksum"):
        DenseIndex.load(saved, built.model, built.data_hash)


def test_load_with_a_flipped_byte_in_the_vectors_raises(saved: Path, built: DenseIndex) -> None:
    data = bytearray((saved / VECTORS).read_bytes())
    data[-5] ^= 0xFF
    rewrite_file(saved, VECTORS, bytes(data), fix_checksum=False)
    with pytest.raises(IndexCorrupt, match=f"{VECTORS} does not match its checksum"):
        DenseIndex.load(saved, built.model, built.data_hash)


def test_load_with_a_missing_data_file_raises(saved: Path, built: DenseIndex) -> None:
    (saved / PASSAGES).unlink()
    with pytest.raises(IndexCorrupt, match=f"{PASSAGES} is missing"):
        DenseIndex.load(saved, built.model, built.data_hash)


@pytest.mark.parametrize("passages", [
    "not json", '{"owner": "x"}', '[{"owner": "x"}]', "[]",
    json.dumps([{"owner": "x", "field": "question", "text": "t"}]),
])
def test_load_with_bad_passages_raises(saved: Path, built: DenseIndex, passages: str) -> None:
    rewrite_file(saved, PASSAGES, passages.encode("utf-8"), fix_checksum=True)
    with pytest.raises(IndexCorrupt):
        DenseIndex.load(saved, built.model, built.data_hash)


def test_load_with_a_wrong_dimension_in_the_manifest_raises(saved: Path, built: DenseIndex) -> None:
    write_manifest(saved, dim=128)
    with pytest.raises(IndexCorrupt, match="dimension"):
        DenseIndex.load(saved, built.model, built.data_hash)


# --------------------------------------------------------------------------- load_or_build


def rebuild_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "rebuilding" in r.getMessage()]


def test_load_or_build_builds_once_then_loads(kb: KnowledgeBase, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "index"
    caplog.set_level(logging.INFO)
    first, _ = load_or_build(kb, HashEncoder(), folder)
    assert {p.name for p in folder.iterdir()} == FOLDER_FILES
    assert {p.name for p in (folder / emb.FOLDER).iterdir()} == CACHE_FILES
    assert rebuild_warnings(caplog) == []  # a missing index is no warning
    stamp = manifest_of(folder)["built_at"], (folder / VECTORS).stat().st_mtime_ns
    second, _ = load_or_build(kb, HashEncoder(), folder)
    assert (manifest_of(folder)["built_at"], (folder / VECTORS).stat().st_mtime_ns) == stamp
    assert second.passages == first.passages
    assert rebuild_warnings(caplog) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop-passages", "garbage-manifest"])
def test_load_or_build_rebuilds_a_corrupt_index_with_a_warning(kb: KnowledgeBase, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture, damage: str) -> None:
    folder = tmp_path / "index"
    good, _ = load_or_build(kb, HashEncoder(), folder)
    vectors = (folder / VECTORS).read_bytes()
    if damage == "truncate":
        (folder / VECTORS).write_bytes(vectors[: len(vectors) // 2])
    elif damage == "flip":
        (folder / VECTORS).write_bytes(vectors[:-1] + bytes([vectors[-1] ^ 1]))
    elif damage == "drop-passages":
        (folder / PASSAGES).unlink()
    else:
        (folder / MANIFEST).write_text('{"format": 2, "model": "hash-256"', encoding="utf-8")
    caplog.clear()
    caplog.set_level(logging.INFO)
    rebuilt, _ = load_or_build(kb, HashEncoder(), folder)
    if damage == "garbage-manifest":  # unreadable manifest = no index: rebuilt, with an info line only
        assert rebuild_warnings(caplog) == []
    else:
        [warning] = rebuild_warnings(caplog)
        assert str(folder) in warning
    assert rebuilt.passages == good.passages
    # the repaired index is saved and loads cleanly
    assert (folder / VECTORS).read_bytes() == vectors
    assert DenseIndex.load(folder, "hash-256", kb.data_hash).passages == good.passages


def test_load_or_build_rebuilds_for_another_encoder(kb: KnowledgeBase, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "index"
    load_or_build(kb, HashEncoder(), folder)
    caplog.set_level(logging.WARNING)
    dense, _ = load_or_build(kb, HashEncoder(dim=64), folder)
    assert (dense.dim, dense.model, manifest_of(folder)["model"]) == (64, "hash-64", "hash-64")
    [warning] = rebuild_warnings(caplog)
    assert "hash-256" in warning and "hash-64" in warning


def test_rebuild_flag_builds_even_a_current_index(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    load_or_build(kb, HashEncoder(), folder)
    write_manifest(folder, build_seconds=1234.5)
    load_or_build(kb, HashEncoder(), folder, rebuild=True)
    assert manifest_of(folder)["build_seconds"] != 1234.5


def test_changed_faq_rebuilds_and_the_new_entry_is_found(tiny_data: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    index = tmp_path / "index"
    engine = open_engine(tiny_data, index)
    old_hash = manifest_of(index)["data_hash"]
    assert engine.kb.data_hash == old_hash
    new_q = "How do I pre-download images for an in-place update?"
    (tiny_data / "faq" / "tiny.md").write_text(
        TINY_MD + f"\n## Images\n\n#### **Q**：{new_q}\n\n**A**：Create an ImagePullJob.\n", encoding="utf-8")
    caplog.set_level(logging.WARNING)
    engine = open_engine(tiny_data, index)
    [warning] = rebuild_warnings(caplog)
    assert "changed" in warning
    assert manifest_of(index)["data_hash"] == engine.kb.data_hash != old_hash
    assert manifest_of(index)["count"] == 17
    answer = engine.ask(new_q)
    assert answer.match is not None and answer.match.id == entry_id(new_q)
    assert answer.match.markdown == "Create an ImagePullJob."
    assert [e.question for e in engine.entries()] == TINY_QUESTIONS + [new_q]


@pytest.mark.parametrize("name, content", [
    ("alternates.yaml", f'"{entry_id(Q_CPU)}":\n  - "a new phrasing"\n'),
    ("out_of_scope.yaml", "- topic: t\n  examples: [\"x\"]\n"),
    ("glossary.tsv", "a | b\n"),
    ("terms.txt", "NewTerm\n"),
])
def test_any_changed_data_file_changes_the_data_hash(tiny_data: Path, name: str, content: str) -> None:
    before = KnowledgeBase.load(tiny_data).data_hash
    (tiny_data / name).write_text(content, encoding="utf-8")
    assert KnowledgeBase.load(tiny_data).data_hash != before
    (tiny_data / name).unlink()
    assert KnowledgeBase.load(tiny_data).data_hash not in (before, "")


def test_data_hash_is_stable(tiny_data: Path) -> None:
    assert KnowledgeBase.load(tiny_data).data_hash == KnowledgeBase.load(tiny_data).data_hash


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_save_leaves_no_temporary_files(saved: Path, built: DenseIndex) -> None:
    built.save(saved)
    built.save(saved)
    assert {p.name for p in saved.iterdir()} == FILES


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old content")

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new content")
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_failed_save_keeps_the_old_index_loadable(saved: Path, built: DenseIndex, kb: KnowledgeBase,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    before = {name: (saved / name).read_bytes() for name in FILES}
    other = DenseIndex.build(kb.passages()[:3], HashEncoder().encode, "hash-256", "other-hash")
    real_replace = os.replace
    calls: list[str] = []

    def fail_on_manifest(src: str, dst: str) -> None:
        calls.append(Path(dst).name)
        if Path(dst).name == MANIFEST:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_manifest)
    with pytest.raises(OSError):
        other.save(saved)
    assert calls[-1] == MANIFEST  # the manifest is written last
    assert {p.name for p in saved.iterdir()} == FILES
    assert (saved / MANIFEST).read_bytes() == before[MANIFEST]
    # the half-written folder is never taken for the new index, nor silently for the old one
    with pytest.raises(IndexCorrupt):
        DenseIndex.load(saved, "hash-256", "other-hash")
    with pytest.raises(IndexCorrupt, match="checksum"):
        DenseIndex.load(saved, built.model, built.data_hash)


def test_engine_answers_from_memory_when_the_index_cannot_be_saved(tiny_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def fail(src: object, dst: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(os, "replace", fail)
    caplog.set_level(logging.WARNING)
    engine = open_engine(tiny_data, tmp_path / "index")
    assert any("not saved" in r.getMessage() for r in caplog.records)
    assert engine.ask(Q_CPU).match.id == entry_id(Q_CPU)  # type: ignore[index]
    assert [p.name for p in (tmp_path / "index").iterdir()] == []


# --------------------------------------------------------------------------- embedding cache


class CountingEncoder:
    """HashEncoder that records every text it encodes (and can tell kinds apart)."""

    def __init__(self, dim: int = 256, name: str | None = None, kind_matters: bool = False) -> None:
        self._inner = HashEncoder(dim)
        self.dim = dim
        self.name = name or self._inner.name
        self.calls: list[tuple[str, list[str]]] = []
        self._kind_matters = kind_matters

    def encode(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        self.calls.append((kind, list(texts)))
        prefix = f"{kind}: " if self._kind_matters else ""
        return self._inner.encode([prefix + t for t in texts], kind)  # type: ignore[arg-type]

    @property
    def texts(self) -> list[str]:
        return [t for _, batch in self.calls for t in batch]


def vectors_of(dense: DenseIndex) -> np.ndarray:
    return dense.index.reconstruct_n(0, len(dense))


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "embedding cache" in r.getMessage()]


def test_a_rebuild_takes_every_vector_from_the_cache(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    enc = CountingEncoder()
    first, built = load_or_build(kb, enc, folder)  # type: ignore[arg-type]
    assert built and sorted(enc.texts) == sorted({p.text for p in kb.passages()})
    enc.calls.clear()
    seen: list[tuple[int, int]] = []
    second, built = load_or_build(kb, enc, folder, rebuild=True, progress=lambda d, t: seen.append((d, t)))  # type: ignore[arg-type]
    assert built and enc.calls == []  # nothing encoded
    assert seen == [(15, 15)]  # the cached passages are reported at once
    assert second.passages == first.passages
    assert np.array_equal(vectors_of(second), vectors_of(first))


def test_one_edited_answer_re_encodes_exactly_that_passage(tiny_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    enc = CountingEncoder()
    load_or_build(KnowledgeBase.load(tiny_data), enc, folder)  # type: ignore[arg-type]
    faq = tiny_data / "faq" / "tiny.md"
    faq.write_text(faq.read_text(encoding="utf-8").replace("Deployment 只能重建 Pod。", "Deployment 只能重建 Pod，不能原地升级。"),
                   encoding="utf-8")
    kb = KnowledgeBase.load(tiny_data)
    enc.calls.clear()
    dense, built = load_or_build(kb, enc, folder)  # type: ignore[arg-type]
    [changed] = [p for p in kb.passages() if "不能原地升级" in p.text]
    assert built and changed.field == "answer"
    assert enc.calls == [("passage", [changed.text])]
    # and the index equals one encoded from scratch
    fresh = DenseIndex.build(kb.passages(), HashEncoder().encode, "hash-256", kb.data_hash)
    assert np.array_equal(vectors_of(dense), vectors_of(fresh))


def test_vectors_from_the_cache_equal_fresh_ones_and_answers_do_too(tiny_data: Path, tmp_path: Path) -> None:
    """What keeps `qa eval` unchanged: an index from a cold cache, a warm cache and no cache are the same."""
    kb = KnowledgeBase.load(tiny_data)
    fresh = DenseIndex.build(kb.passages(), HashEncoder().encode, "hash-256", kb.data_hash)
    cold = open_engine(tiny_data, tmp_path / "index")
    warm = open_engine(tiny_data, tmp_path / "index", rebuild=False)
    (tmp_path / "index" / MANIFEST).unlink()  # the index is gone, the cache is not
    enc = CountingEncoder()
    rebuilt = open_engine(tiny_data, tmp_path / "index", encoder=enc)  # type: ignore[arg-type]
    assert rebuilt.built and enc.calls == []
    for engine in (cold, warm, rebuilt):
        assert engine.dense.passages == fresh.passages
        assert vectors_of(engine.dense).tobytes() == vectors_of(fresh).tobytes()  # bit for bit
    questions = TINY_QUESTIONS + ["kruise-manager 日志", "sidecar injection", "how to bake bread"]
    volatile = {"took_ms", "answer_id"}
    assert [cold.ask(q).model_dump(exclude=volatile) for q in questions] == \
        [rebuilt.ask(q).model_dump(exclude=volatile) for q in questions]


def test_query_and_passage_vectors_of_one_text_are_kept_apart(tmp_path: Path) -> None:
    text = "How do I inject a sidecar?"
    passages = [Passage("a", "question", text), Passage("a", "answer", text)]
    enc = CountingEncoder(kind_matters=True)
    cache = EmbeddingCache.open(tmp_path / "cache", enc.name, enc.dim)
    first = DenseIndex.build(passages, enc.encode, enc.name, "h", cache=cache)
    assert sorted(enc.calls) == [("passage", [text]), ("query", [text])]
    assert not np.array_equal(vectors_of(first)[0], vectors_of(first)[1])
    assert cache.save()
    enc.calls.clear()
    again = DenseIndex.build(passages, enc.encode, enc.name, "h", cache=EmbeddingCache.open(tmp_path / "cache", enc.name))
    assert enc.calls == [] and np.array_equal(vectors_of(again), vectors_of(first))
    assert text_key("m", "query", text) != text_key("m", "passage", text) != text_key("n", "passage", text)


@pytest.mark.parametrize("other", [CountingEncoder(256, name="other-model-256"), CountingEncoder(64)])
def test_another_model_never_reuses_vectors(kb: KnowledgeBase, tmp_path: Path, other: CountingEncoder,
                                            caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "index"
    load_or_build(kb, HashEncoder(), folder)
    caplog.set_level(logging.INFO)
    dense, _ = load_or_build(kb, other, folder)  # type: ignore[arg-type]
    assert sorted(other.texts) == sorted({p.text for p in kb.passages()})  # everything encoded again
    assert cache_warnings(caplog) == []  # a model change is no damage
    m = json.loads((folder / emb.FOLDER / emb.MANIFEST).read_text(encoding="utf-8"))
    assert (m["model"], m["dim"]) == (other.name, other.dim)
    fresh = DenseIndex.build(kb.passages(), CountingEncoder(other.dim).encode, other.name, kb.data_hash)
    assert np.array_equal(vectors_of(dense), vectors_of(fresh))
    # and the first model's vectors are not kept either: switching back encodes everything
    back = CountingEncoder()
    load_or_build(kb, back, folder)  # type: ignore[arg-type]
    assert len(back.texts) == len({p.text for p in kb.passages()})


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage-manifest", "no-data", "bad-count", "swap-data"])
def test_a_damaged_cache_is_rebuilt_with_a_warning(kb: KnowledgeBase, tmp_path: Path, damage: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "index"
    good, _ = load_or_build(kb, HashEncoder(), folder)
    cache_dir = folder / emb.FOLDER
    data = (cache_dir / emb.DATA).read_bytes()
    if damage == "flip":
        (cache_dir / emb.DATA).write_bytes(data[:-9] + bytes([data[-9] ^ 1]) + data[-8:])
    elif damage == "truncate":
        (cache_dir / emb.DATA).write_bytes(data[: len(data) // 2])
    elif damage == "garbage-manifest":
        (cache_dir / emb.MANIFEST).write_text('{"format": 1, "model"', encoding="utf-8")
    elif damage == "no-data":
        (cache_dir / emb.DATA).unlink()
    else:  # an intact file that disagrees with the manifest, even with a matching checksum
        m = json.loads((cache_dir / emb.MANIFEST).read_text(encoding="utf-8"))
        if damage == "bad-count":
            m["count"] = 3
        else:
            other = tmp_path / "other"
            cache = EmbeddingCache(other, "hash-256", 256)
            cache.encode([("query", "x")], HashEncoder().encode)  # type: ignore[arg-type]
            cache.save()
            (cache_dir / emb.DATA).write_bytes((other / emb.DATA).read_bytes())
            m["files"][emb.DATA] = hashlib.sha256((cache_dir / emb.DATA).read_bytes()).hexdigest()
        (cache_dir / emb.MANIFEST).write_text(json.dumps(m), encoding="utf-8")
    caplog.set_level(logging.INFO)
    enc = CountingEncoder()
    rebuilt, _ = load_or_build(kb, enc, folder, rebuild=True)  # type: ignore[arg-type]
    [warning] = cache_warnings(caplog)
    assert "unusable" in warning and str(cache_dir) in warning
    assert len(enc.texts) == len({p.text for p in kb.passages()})
    assert np.array_equal(vectors_of(rebuilt), vectors_of(good))
    # the cache is whole again
    enc.calls.clear()
    load_or_build(kb, enc, folder, rebuild=True)  # type: ignore[arg-type]
    assert enc.calls == []


def test_the_cache_keeps_only_the_passages_in_use(tiny_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    load_or_build(KnowledgeBase.load(tiny_data), HashEncoder(), folder)
    (tiny_data / "alternates.yaml").unlink()
    (tiny_data / "out_of_scope.yaml").unlink()
    kb = KnowledgeBase.load(tiny_data)
    load_or_build(kb, HashEncoder(), folder)
    m = json.loads((folder / emb.FOLDER / emb.MANIFEST).read_text(encoding="utf-8"))
    assert m["count"] == len({p.text for p in kb.passages()}) == 10
    cache = EmbeddingCache.open(folder / emb.FOLDER, "hash-256", 256)
    assert len(cache) == 10


def test_the_cache_is_written_data_first_manifest_last(kb: KnowledgeBase, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    order: list[str] = []

    def record(src: str, dst: str) -> None:
        order.append(str(Path(dst).relative_to(tmp_path / "index")))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", record)
    load_or_build(kb, HashEncoder(), tmp_path / "index")
    assert order == [VECTORS, PASSAGES, MANIFEST, f"{emb.FOLDER}/{emb.DATA}", f"{emb.FOLDER}/{emb.MANIFEST}"]


def test_a_cache_that_cannot_be_saved_only_logs(kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    real_write = emb.atomic_write

    def fail(path: Path, data: bytes) -> None:
        if path.name == emb.DATA:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(emb, "atomic_write", fail)
    caplog.set_level(logging.WARNING)
    dense, built = load_or_build(kb, HashEncoder(), tmp_path / "index")
    assert built and len(dense) == 15
    assert any("embedding cache not saved" in w for w in cache_warnings(caplog))
    assert DenseIndex.load(tmp_path / "index", "hash-256", kb.data_hash).passages == dense.passages


def test_a_cache_of_another_model_cannot_build(kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot build"):
        DenseIndex.build(kb.passages(), HashEncoder().encode, "hash-256", "h",
                         cache=EmbeddingCache(tmp_path, "hash-64", 64))


# --------------------------------------------------------------------------- temporary files


def test_leftover_temporary_files_are_removed_on_start_and_on_save(saved: Path, built: DenseIndex) -> None:
    dead = saved / f".{VECTORS}.99999999-abc123.tmp"  # no such process
    mine = saved / f".{PASSAGES}.{os.getpid()}-x_y.tmp"  # this process, not writing it now
    old_style = saved / f".{VECTORS}.k2j3h4.tmp"  # from before the pid was in the name
    for p in (dead, mine, old_style):
        p.write_bytes(b"half a file")
    DenseIndex.load(saved, built.model, built.data_hash)
    assert {p.name for p in saved.iterdir()} == FILES
    dead.write_bytes(b"half a file")
    built.save(saved)
    assert {p.name for p in saved.iterdir()} == FILES


def test_a_temporary_file_being_written_by_a_live_process_is_kept(tmp_path: Path) -> None:
    live = tmp_path / f".{VECTORS}.{os.getppid()}-abc.tmp"  # our parent is alive
    live.write_bytes(b"x")
    assert remove_stale_temporary_files(tmp_path) == [] and live.exists()
    hour_ago = time.time() - qindex.STALE_TMP_SECONDS - 60
    os.utime(live, (hour_ago, hour_ago))  # ... unless no save could take that long
    assert remove_stale_temporary_files(tmp_path) == [live] and not live.exists()


KILLED_SAVE = """
import os, sys, time
import numpy as np
from qa.index import DenseIndex, Passage
from qa.encoders import HashEncoder
enc = HashEncoder()
dense = DenseIndex.build([Passage("a", "question", "hello")], enc.encode, enc.name, "h")
def stall(src, dst):
    print("writing", flush=True)
    time.sleep(60)
os.replace = stall
dense.save(sys.argv[1])
"""


def test_a_save_killed_with_sigkill_leaves_nothing_after_the_next_start(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    load_or_build(kb, HashEncoder(), folder)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(folder)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    [tmp] = folder.glob(f".{VECTORS}.*.tmp")
    assert tmp.read_bytes()  # the new vectors, written but not renamed
    assert remove_stale_temporary_files(folder) == []  # its writer is still alive: kept
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert tmp.exists()
    dense, built = load_or_build(kb, HashEncoder(), folder)  # the next start
    assert not built and not tmp.exists()
    assert {p.name for p in folder.iterdir()} == FOLDER_FILES


# --------------------------------------------------------------------------- index type by size


def test_exact_search_below_the_line_hnsw_from_it(kb: KnowledgeBase, saved: Path) -> None:
    enc = HashEncoder()
    flat = DenseIndex.build(kb.passages(), enc.encode, enc.name, kb.data_hash, hnsw_from=16)
    hnsw = DenseIndex.build(kb.passages(), enc.encode, enc.name, kb.data_hash, hnsw_from=15)
    assert (len(flat), flat.kind, hnsw.kind) == (15, "flat", "hnsw")
    assert isinstance(hnsw.index, faiss.IndexHNSWFlat) and hnsw.index.metric_type == faiss.METRIC_INNER_PRODUCT
    assert manifest_of(saved)["index"] == {"type": "flat"}
    assert qindex.HNSW_FROM > 538  # today's FAQ (538 vectors) is searched exactly


def test_hnsw_results_equal_exact_ones_on_an_easy_case(kb: KnowledgeBase, tmp_path: Path) -> None:
    enc = HashEncoder()
    flat = DenseIndex.build(kb.passages(), enc.encode, enc.name, kb.data_hash)
    hnsw = DenseIndex.build(kb.passages(), enc.encode, enc.name, kb.data_hash, hnsw_from=1)
    texts = [p.text for p in kb.passages()]
    q = enc.encode(texts, "query")
    for k in (1, 5):
        fs, fi = flat.search(q, k)
        hs, hi = hnsw.search(q, k)
        assert np.array_equal(fi, hi) and np.allclose(fs, hs, atol=1e-5)
    # each passage finds itself first, one question at a time too
    assert [int(hnsw.search(v[None, :], 1)[1][0, 0]) for v in q] == list(range(len(texts)))
    hnsw.save(tmp_path / "h")
    m = manifest_of(tmp_path / "h")
    assert m["index"] == {"type": "hnsw", "M": qindex.HNSW_M, "ef_construction": qindex.HNSW_EF_CONSTRUCTION,
                          "ef_search": qindex.HNSW_EF_SEARCH}
    loaded = DenseIndex.load(tmp_path / "h", enc.name, kb.data_hash)
    assert loaded.kind == "hnsw" and np.array_equal(loaded.search(q, 5)[1], hnsw.search(q, 5)[1])


def test_the_engine_answers_from_an_hnsw_index(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exact = open_engine(tiny_data, tmp_path / "flat")
    monkeypatch.setattr(qindex, "HNSW_FROM", 10)
    engine = open_engine(tiny_data, tmp_path / "hnsw")
    assert (exact.dense.kind, engine.dense.kind, manifest_of(tmp_path / "hnsw")["index"]["type"]) == ("flat", "hnsw", "hnsw")  # type: ignore[index]
    for q in TINY_QUESTIONS:
        assert engine.ask(q).match.id == exact.ask(q).match.id == entry_id(q)  # type: ignore[union-attr]


def test_a_manifest_that_misnames_the_index_type_is_corrupt(kb: KnowledgeBase, saved: Path, built: DenseIndex) -> None:
    write_manifest(saved, index={"type": "hnsw"})
    with pytest.raises(IndexCorrupt, match="flat"):
        DenseIndex.load(saved, built.model, built.data_hash)


def test_an_index_saved_before_the_type_was_recorded_loads_as_flat(saved: Path, built: DenseIndex) -> None:
    m = manifest_of(saved)
    del m["index"]
    (saved / MANIFEST).write_text(json.dumps(m), encoding="utf-8")
    assert DenseIndex.load(saved, built.model, built.data_hash).kind == "flat"


def test_a_search_without_k_returns_all_up_to_a_size_then_the_best(built: DenseIndex,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert built.search(queries())[1].shape == (3, 15)
    monkeypatch.setattr(qindex, "SEARCH_ALL_UP_TO", 14)
    monkeypatch.setattr(qindex, "SEARCH_K", 4)
    scores, idx = built.search(queries())
    assert idx.shape == (3, 4)
    assert np.array_equal(idx, built.search(queries(), k=15)[1][:, :4])


def test_a_single_question_search_leaves_faiss_threads_as_they_were(built: DenseIndex) -> None:
    before = faiss.omp_get_max_threads()
    built.search(queries()[:1])
    assert faiss.omp_get_max_threads() == before


def test_hnsw_searches_as_many_candidates_as_it_returns() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    flat = DenseIndex(qindex.make_faiss_index(x, hnsw_from=10_000), [], "m", "h")
    hnsw = DenseIndex(qindex.make_faiss_index(x, hnsw_from=1), [], "m", "h")
    hnsw.index.hnsw.efSearch = 16
    _, exact = flat.search(x[:5], 500)
    for q in (x[:5], x[:1]):  # a batch and one question
        _, got = hnsw.search(q, 500)
        recall = np.mean([len(set(a) & set(b)) / 500 for a, b in zip(got, exact)])
        assert recall > 0.99  # with efSearch 16 for 500 results it is about 0.6
    assert hnsw.index.hnsw.efSearch == 16  # per search, not changed


def test_a_killed_build_resumes_from_its_checkpoints(kb: KnowledgeBase, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "index"
    monkeypatch.setattr(EmbeddingCache, "checkpoint_seconds", 0.0)  # after every batch
    enc = CountingEncoder()
    real_encode = enc.encode

    def dies_on_the_third_call(texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        if len(enc.calls) == 2:
            raise KeyboardInterrupt  # the build is stopped half-way
        return real_encode(texts, kind)

    monkeypatch.setattr(enc, "encode", dies_on_the_third_call)
    with pytest.raises(KeyboardInterrupt):
        DenseIndex.build(kb.passages(), enc.encode, enc.name, kb.data_hash, batch_size=4,
                         cache=EmbeddingCache.open(folder / emb.FOLDER, enc.name, enc.dim))
    done = enc.texts
    assert len(done) >= 4 and DenseIndex.read_manifest(folder) is None  # no index, but a cache
    assert len(EmbeddingCache.open(folder / emb.FOLDER, enc.name, enc.dim)) == len(done)
    after = CountingEncoder()
    dense, _ = load_or_build(kb, after, folder)  # type: ignore[arg-type]
    assert sorted(after.texts) == sorted({p.text for p in kb.passages()} - set(done))  # only the rest
    fresh = DenseIndex.build(kb.passages(), HashEncoder().encode, "hash-256", kb.data_hash)
    assert np.array_equal(vectors_of(dense), vectors_of(fresh))
