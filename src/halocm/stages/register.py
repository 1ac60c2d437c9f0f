"""`halocm register`: the benchmark gate, then the MLflow registry and its aliases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from halocm.api import Generator, load_model
from halocm.config import Config
from halocm.data.dataset import load_split
from halocm.data.normalize import denormalize_condition, denormalize_params
from halocm.io import write_json
from halocm.stages.common import consistency_path, split_path
from halocm.tracking import gate, register_model


def register(cfg: Config, log) -> str:
    """Gate the benchmark row at `tracking.gate_sampling_steps`; with tracking on, log the
    model (sampling with the current `sample` settings) into this stage's run, register a
    version and move `champion` only through the gate. Writes metrics/registry.json."""
    t = cfg.tracking
    bench = json.loads((Path(cfg.paths.metrics_dir) / "benchmark.json").read_text())
    passes, score, reason = gate(
        bench,
        sampling_steps=t.gate_sampling_steps,
        max_pk_err=t.gate_max_pk_err,
        max_rk_err=t.gate_max_rk_err,
    )
    result = {
        "model": t.model_name,
        "version": None,
        "alias": None,
        "gate_passed": passes,
        "gate_score": score,
        "gate": reason,
        "previous_champion_score": None,
    }
    registry = Path(cfg.paths.metrics_dir) / "registry.json"
    if not t.enabled:
        write_json(registry, result)
        return f"tracking disabled: nothing registered (gate: {reason})"
    gen = load_model(consistency_path(cfg), device="cpu", sample=cfg.sample)
    example = input_example(split_path(cfg, "test"), gen)
    output = gen.sample(example["condition"], example.get("params"), seed=0)[:, 0]
    version, alias, champion = register_model(
        log,
        consistency_path(cfg),
        model_name=t.model_name,
        example=example,
        output=output,
        sample_settings=cfg.sample.model_dump(mode="json"),
        passes=passes,
        score=score,
        reason=reason,
        mode=gen.mode,
    )
    result.update(version=version, alias=alias, previous_champion_score=champion)
    write_json(registry, result)
    return f"registered {t.model_name} version {version} as @{alias} (score {score:.4f}; {reason})"


def input_example(test_path: Path, gen: Generator) -> dict[str, np.ndarray]:
    """Two test maps in physical units: the logged model's input example."""
    test = load_split(test_path)
    example = {
        "condition": np.asarray(
            denormalize_condition(test["condition"][:2], gen.stats), dtype=np.float32
        )
    }
    if gen.shapes.n_params:
        example["params"] = np.asarray(
            denormalize_params(test["params"][:2], gen.stats), dtype=np.float32
        )
    return example


def run(cfg: Config, log) -> None:
    print(register(cfg, log))
