"""The simulator section of the product's params.yaml, with test overrides: simulator tests
run the settings the product runs, changed only where a test says so."""

from __future__ import annotations

from pathlib import Path

import yaml

from halocm.config import Simulator

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def simulator(**overrides) -> Simulator:
    section = yaml.safe_load(PARAMS.read_text())["simulator"]
    return Simulator(**{**section, **overrides})
