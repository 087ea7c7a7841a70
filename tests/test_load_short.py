"""A short version of `make load`: the real server under concurrent API and signed Slack traffic."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def test_short_load_run_has_no_errors(tmp_path: Path) -> None:
    index = tmp_path / "index"
    if (ROOT / "index" / "manifest.json").exists():  # a stale copy is rebuilt by the server
        shutil.copytree(ROOT / "index", index)
    env = {**os.environ, "QA_INDEX_DIR": str(index), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "scripts/load.py", "--seconds", "5", "--clients", "10", "--single", "20"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith(("api:", "slack:"))]
    assert [line.split(":")[0] for line in lines] == ["api", "slack"], out.stdout
    for line in lines:
        assert "errors 0," in line, line
        assert int(re.search(r"(\d+) requests", line).group(1)) > 20, line  # type: ignore[union-attr]
    for target in ("api", "slack"):  # the reference pass and the verdict on the bars are printed too
        assert re.search(rf"^{target} single client, 20 distinct questions .*p50 [\d.]+ ms", out.stdout, re.M), out.stdout
        assert re.search(rf"^{target} bars: (all met|missed: )", out.stdout, re.M), out.stdout
