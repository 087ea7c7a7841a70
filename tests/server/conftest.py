"""Fixtures for the HTTP server tests: a tiny bilingual FAQ, a HashEncoder engine, the app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_test_support import base_settings, engine_like, write_data
from tiny_faq import open_engine

from qa.search import Engine
from server.app import create_app
from server.settings import ServerSettings


@pytest.fixture(scope="session")
def shared_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data folder and an index folder that no test changes (tests that edit data use ``private_dirs``)."""
    root = tmp_path_factory.mktemp("shared")
    return write_data(root / "data"), root / "index"


@pytest.fixture(scope="session")
def shared_engine(shared_dirs: tuple[Path, Path]) -> Engine:
    """Built once: opening an engine costs about half a second (jieba's dictionary)."""
    data_dir, index_dir = shared_dirs
    return open_engine(data_dir, index_dir, threshold=0.3)


@pytest.fixture
def engine(shared_engine: Engine) -> Engine:
    return engine_like(shared_engine)


@pytest.fixture
def private_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder of this test's own (for tests that edit the FAQ) and its index folder."""
    return write_data(tmp_path / "data"), tmp_path / "index"


@pytest.fixture
def make_settings(shared_dirs: tuple[Path, Path]) -> Callable[..., ServerSettings]:
    def make(**overrides: Any) -> ServerSettings:
        return base_settings(*shared_dirs, **overrides)
    return make


@pytest.fixture
def settings(make_settings: Callable[..., ServerSettings]) -> ServerSettings:
    return make_settings()


@pytest.fixture
def app(settings: ServerSettings, engine: Engine) -> Any:
    return create_app(settings, engine)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_client(make_settings: Callable[..., ServerSettings], shared_engine: Engine
                ) -> Iterator[Callable[..., TestClient]]:
    """Opens a client on a new app: settings overrides, and an engine (default: the shared one at
    ``threshold``). Pass ``raise_server_exceptions=False`` to see 500 responses as responses."""
    opened: list[TestClient] = []

    def make(threshold: float = 0.3, engine: Engine | None = None, raise_server_exceptions: bool = True,
             settings: ServerSettings | None = None, **overrides: Any) -> TestClient:
        s = settings or make_settings(threshold=threshold, **overrides)
        c = TestClient(create_app(s, engine or engine_like(shared_engine, threshold)),
                       raise_server_exceptions=raise_server_exceptions)
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)
