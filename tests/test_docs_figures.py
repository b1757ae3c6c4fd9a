"""docs/measurement.md quotes figures rendered from the committed results: a stale block fails."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_measurement_doc_figures_are_the_committed_results():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "benchmarks" / "docs_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.DOC.read_text()
    block = text[text.index(mod.START):text.index(mod.END) + len(mod.END)]
    assert block == mod.render(), "run `.venv/bin/python benchmarks/docs_figures.py` to regenerate the figures"
    assert "R²" in block and "Spearman" in block and "busy processes" in block
