"""Fixtures for the browser tests: the real engine behind a live uvicorn, headless Chromium.

A second live server answers from ``structure_faq.md`` (beside this file) with the HashEncoder:
its entries use every markdown construct the page renders, asked verbatim to get them back.

Every test here is marked ``browser``; the whole folder skips when /usr/bin/chromium is absent
(CI installs it with ``make browser-deps``), so ``make test`` still runs everything else.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Locator, Page

    from qa.search import Engine

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STRUCTURE_FAQ = HERE / "structure_faq.md"
CHROMIUM = Path("/usr/bin/chromium")
SKIP_REASON = f"{CHROMIUM} is not installed (run `make browser-deps`); browser tests skipped"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 10_000
ANSWER_TIMEOUT = 10_000

# Records CSP violations inside the page too (besides the console's "Refused to ..." lines).
# Init scripts are injected by the browser, so the page's own CSP does not block this one.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
                              ' at ' + (e.sourceFile || '?') + ':' + e.lineNumber);
});
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test under tests/browser as ``browser``, skips them all without Chromium, and runs
    them last: Playwright's sync API keeps an event loop running in the main thread while its
    session-wide browser lives, and ``asyncio.run`` in a later test would refuse to start."""
    skip = pytest.mark.skip(reason=SKIP_REASON)
    browser_items = []
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            browser_items.append(item)
            if not CHROMIUM.exists():
                item.add_marker(skip)
    items[:] = [i for i in items if i not in browser_items] + browser_items


# -- the server -----------------------------------------------------------------------------------


@dataclass
class LiveServer:
    """The running app: its base URL and the engine it answers with."""

    url: str
    engine: Engine


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary index folder, seeded with a copy of the project's built index when there is one.

    The copy only saves the build: ``Engine.from_settings`` checks the model, the data hash and the file
    hashes, and rebuilds here (never in the project's index/) when the copy is stale or damaged.
    """
    path = tmp_path_factory.mktemp("index")
    for name in ("manifest.json", "passages.json", "vectors.faiss"):
        src = ROOT / "index" / name
        if src.is_file():
            shutil.copyfile(src, path / name)
    return path


@pytest.fixture(scope="session")
def engine(index_dir: Path) -> Engine:
    """The real default model on the real FAQ; the index is built in a temporary folder."""
    from qa.search import Engine
    from qa.settings import Settings

    settings = Settings(data_dir=ROOT / "data", faq_dir=None, index_dir=index_dir, model="multilingual-e5-small")
    return Engine.from_settings(settings)


@pytest.fixture(scope="session")
def live_server(engine: Engine, index_dir: Path) -> Iterator[LiveServer]:
    """The app on the real FAQ, served by uvicorn on 127.0.0.1 (a free port) in a background thread."""
    yield from _serve(engine, ROOT / "data", index_dir)


@pytest.fixture(scope="session")
def structure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app on structure_faq.md alone, with the HashEncoder (a question asked verbatim is its match)."""
    from qa.encoders import HashEncoder
    from qa.search import Engine
    from qa.settings import Settings

    root = tmp_path_factory.mktemp("structure")
    (root / "data" / "faq").mkdir(parents=True)
    shutil.copyfile(STRUCTURE_FAQ, root / "data" / "faq" / STRUCTURE_FAQ.name)
    settings = Settings(data_dir=root / "data", faq_dir=None, index_dir=root / "index")
    yield from _serve(Engine.from_settings(settings, encoder=HashEncoder()), root / "data", root / "index")


def _serve(engine: Engine, data_dir: Path, index_dir: Path) -> Iterator[LiveServer]:
    """Serves the engine until the generator is closed; yields once /readyz answers 200."""
    import httpx
    import uvicorn

    from server.app import create_app
    from server.settings import ServerSettings

    settings = ServerSettings(rate_limit="off", data_dir=data_dir, faq_dir=None, index_dir=index_dir,
                              state_dir=index_dir.parent / "state")  # its records stay out of the repository
    app = create_app(settings, engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-browser-tests", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if not thread.is_alive():
                pytest.fail("the uvicorn server thread exited during startup")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{url}/readyz did not answer 200 within 30 s")
            time.sleep(0.05)
        yield LiveServer(url, engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class PageProblems:
    """Console errors, uncaught page errors, CSP violations and dialogs of one page."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed_failures: list[str] = field(default_factory=list)

    def allow_failed_request(self, url_part: str) -> None:
        """A test that makes requests fail on purpose excuses their "Failed to load resource" lines."""
        self.allowed_failures.append(url_part)

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        where = msg.location.get("url", "") if msg.location else ""
        if msg.text.startswith("Failed to load resource") and any(a in where for a in self.allowed_failures):
            return
        self.console_errors.append(f"{msg.text} ({where})")

    def on_page_error(self, err: Error) -> None:
        self.page_errors.append(f"{err.name}: {err.message}")


@dataclass
class BrowserPage:
    """What a test drives: the page, its problems, and the server it talks to."""

    page: Page
    problems: PageProblems
    server: LiveServer

    def open(self, path: str = "/") -> Any:
        return self.page.goto(self.server.url + path)


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., BrowserPage]]:
    """Opens pages in fresh contexts (clipboard allowed, en-US unless told) on the live server (or
    ``server=``); fails the test on any console error, uncaught exception, CSP violation or dialog in them."""
    opened: list[tuple[Any, BrowserPage]] = []

    def make(server: LiveServer | None = None, **context_options: Any) -> BrowserPage:
        options: dict[str, Any] = {"permissions": ["clipboard-read", "clipboard-write"], "locale": "en-US"}
        options.update(context_options)
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(CSP_WATCH)
        page = context.new_page()
        problems = PageProblems()
        page.on("console", problems.on_console)
        page.on("pageerror", problems.on_page_error)

        def on_dialog(dialog: Any) -> None:
            problems.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        # the real FAQ's server starts (loading the model) only for the tests that use it
        bp = BrowserPage(page, problems, server or request.getfixturevalue("live_server"))
        opened.append((context, bp))
        return bp

    yield make

    from playwright.sync_api import Error as PlaywrightError

    failures = []
    for context, bp in opened:
        try:
            csp = bp.page.evaluate("window.__cspViolations || []") if not bp.page.is_closed() else []
        except PlaywrightError as exc:  # the page navigated away or crashed: report what we have
            csp = [f"(could not read the CSP violations: {exc})"]
        context.close()
        for kind, found in (("CSP violation", csp), ("console error", bp.problems.console_errors),
                            ("page error", bp.problems.page_errors), ("dialog", bp.problems.dialogs)):
            failures += [f"{kind}: {x}" for x in found]
    if failures:
        pytest.fail("the page reported problems:\n" + "\n".join(failures))


@pytest.fixture
def chat(new_page: Callable[..., BrowserPage]) -> BrowserPage:
    """The chat page, loaded, in an en-US desktop context."""
    bp = new_page()
    bp.open()
    return bp


# -- helpers of the tests -------------------------------------------------------------------------


def ask(page: Page, question: str) -> Locator:
    """Types the question, presses Enter, and returns the new bot message once it has settled."""
    from playwright.sync_api import expect

    before = page.locator("#log .msg.bot").count()
    box = page.locator("#question")
    box.fill(question)
    box.press("Enter")
    bot = page.locator("#log .msg.bot").nth(before)
    expect(bot).not_to_have_attribute("data-state", "pending", timeout=ANSWER_TIMEOUT)
    return bot


def screenshot(page: Page, name: str) -> None:
    """Saves a screenshot under artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))
