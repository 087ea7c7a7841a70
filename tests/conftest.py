"""Shared fixtures of the answer-engine tests: the tiny bilingual FAQ (tiny_faq.py) on disk and a
HashEncoder engine over it.

jieba, BM25 and FAISS run for real; only the neural model is replaced by the deterministic
:class:`qa.encoders.HashEncoder`, under which a question asked verbatim has cosine 1 with its
own passage.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_faq import open_engine, write_tiny_data

from qa.search import Engine


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A data folder with the tiny FAQ (5 entries) and small alternates, glossary, terms, out-of-scope files.

    This test's own copy: edit it freely, then open an engine on it with ``tiny_faq.open_engine``.
    """
    return write_tiny_data(tmp_path / "data")


@pytest.fixture(scope="session")
def _tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine over an untouched copy of the tiny data, with its index in a tmp folder.

    Opened once per session: each opening loads jieba's dictionary (about half a second).
    """
    root = tmp_path_factory.mktemp("tiny")
    return open_engine(write_tiny_data(root / "data"), root / "index")


@pytest.fixture
def hash_engine(_tiny_engine: Engine) -> Engine:
    """An engine over the tiny data with the HashEncoder and the default threshold; its cache is its own."""
    return Engine(_tiny_engine.kb, _tiny_engine.encoder, _tiny_engine.dense)
