"""qa.index: the dense index's save/load round trip, its integrity checks, atomic writes, and rebuilds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from tiny_faq import Q_CPU, Q_SIDECAR, TINY_MD, TINY_QUESTIONS, open_engine

from qa.encoders import HashEncoder
from qa.errors import IndexCorrupt
from qa.faq import entry_id
from qa.index import FORMAT_VERSION, MANIFEST, PASSAGES, VECTORS, DenseIndex, Passage, _atomic_write
from qa.knowledge import KnowledgeBase
from qa.search import load_or_build

FILES = {MANIFEST, VECTORS, PASSAGES}


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
    assert {p.name for p in folder.iterdir()} == FILES
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
    _atomic_write(target, b"one")
    _atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_save_leaves_no_temporary_files(saved: Path, built: DenseIndex) -> None:
    built.save(saved)
    built.save(saved)
    assert {p.name for p in saved.iterdir()} == FILES


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    _atomic_write(target, b"old content")

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        _atomic_write(target, b"new content")
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
