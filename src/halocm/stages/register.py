"""`halocm register`: the benchmark gate, then the MLflow registry and its aliases; and the
model that the `train` stage logs (a LoggedModel) for it to register."""

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
from halocm.tracking import find_logged_model, gate, log_model, register_model


def register(cfg: Config, log) -> str:
    """Gate the benchmark row at `tracking.gate_sampling_steps`; with tracking on, register a
    version of the model the `train` run logged (logging it here if that run did not) and
    move `champion` only through the gate. Writes metrics/registry.json."""
    t = cfg.tracking
    bench = json.loads((Path(cfg.paths.metrics_dir) / "benchmark.json").read_text())
    passes, score, reason = gate(
        bench,
        sampling_steps=t.gate_sampling_steps,
        max_pk_err=t.gate_max_pk_err,
        max_rk_err=t.gate_max_rk_err,
        max_mass_bias=t.gate_max_mass_bias,
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
    checkpoint = consistency_path(cfg)
    model_id = find_logged_model(t, checkpoint) or log_consistency_model(cfg, "test")
    version, alias, champion = register_model(
        log,
        model_id,
        model_name=t.model_name,
        passes=passes,
        score=score,
        reason=reason,
        mode=bench["mode"],
    )
    result.update(version=version, alias=alias, previous_champion_score=champion)
    write_json(registry, result)
    return f"registered {t.model_name} version {version} as @{alias} (score {score:.4f}; {reason})"


def log_consistency_model(cfg: Config, split: str) -> str:
    """Log models/consistency.pt as a LoggedModel of the active run, its input example two
    maps of `split` in physical units, sampling with the current `sample` settings."""
    gen = load_model(consistency_path(cfg), device="cpu", sample=cfg.sample)
    example = input_example(split_path(cfg, split), gen)
    output = gen.sample(example["condition"], example.get("params"), seed=0)[:, 0]
    return log_model(
        consistency_path(cfg),
        example=example,
        output=output,
        sample_settings=cfg.sample.model_dump(mode="json"),
        mode=gen.mode,
    )


def input_example(path: Path, gen: Generator) -> dict[str, np.ndarray]:
    """Two maps of a prepared split in physical units: the logged model's input example."""
    data = load_split(path)
    example = {
        "condition": np.asarray(
            denormalize_condition(data["condition"][:2], gen.stats), dtype=np.float32
        )
    }
    if gen.shapes.n_params:
        example["params"] = np.asarray(
            denormalize_params(data["params"][:2], gen.stats), dtype=np.float32
        )
    return example


def run(cfg: Config, log) -> None:
    print(register(cfg, log))
