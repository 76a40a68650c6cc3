"""The guided notebook runs top to bottom, and is committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "explore_signins.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_top_to_bottom(tshark: str) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["MPLBACKEND"] = "agg"
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            data = out.get("data", {})
            texts.append(str(data.get("text/plain", "")) + str(data.get("text/html", "")) + str(out.get("text", "")))
    joined = "\n".join(texts)
    assert "Lync 2013 Windows Phone" in joined  # the per-client summary
    assert "NTLM credentials refused" in joined  # a failure reason
    assert "lockout-risk" in joined  # the findings
    assert "HTTP" in joined  # the drilled-down packets
