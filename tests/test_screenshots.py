"""The README's screenshots: committed under docs/img/, and retaken by scripts/screenshots.py
where a browser is available (headless Chromium on a tiny pipeline's MLflow, DVC and Prefect
pages); skipped with the reason where not."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHOTS = (
    "mlflow-runs",
    "mlflow-charts",
    "mlflow-run",
    "mlflow-compare",
    "mlflow-registry",
    "dvc-plots",
    "prefect-flow-run",
)


def _rendered(path: Path) -> bool:
    """A page with content: many colours, not a blank or error page."""
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return colours is None or len(colours) > 64


def test_the_readme_shows_every_committed_screenshot():
    shown = set(re.findall(r"\(docs/img/([\w-]+)\.png\)", (ROOT / "README.md").read_text()))
    assert shown == set(SHOTS)
    for name in SHOTS:
        path = ROOT / "docs" / "img" / f"{name}.png"
        assert path.is_file() and _rendered(path), path


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="no Chromium to take screenshots with (apt-get install -y chromium)",
)
def test_the_screenshot_script_photographs_every_page(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshots.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in SHOTS:
        path = tmp_path / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 20_000 and _rendered(path), name
