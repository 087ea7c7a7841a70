"""The evaluation notebook runs top to bottom against the library (so it cannot rot)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "evaluate.ipynb"

pytestmark = pytest.mark.integration


def test_evaluation_notebook_executes_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    if (ROOT / "index" / "manifest.json").exists():  # a current copy saves the build; a stale one is rebuilt
        shutil.copytree(ROOT / "index", index)
    monkeypatch.setenv("QA_INDEX_DIR", str(index))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "239 questions" in text or "questions, 23 entries" in text
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs if o.output_type in ("execute_result", "display_data"))
    for metric in ("top1", "mrr", "recall@3", "false_reject", "rejected"):
        assert metric in html, metric
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the score-distribution and per-entry plots"
