"""The pipeline's stages: what each reads (params keys, files) and writes, and how it runs.

The CLI, the DVC stages (dvc.yaml) and the Prefect flow all run stages through `run_stage`;
`fingerprint` is what the Prefect cache keys on, mirroring DVC's params/deps tracking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from halocm.config import Config

ORDER = ("generate", "prepare", "pretrain", "train", "evaluate", "register")
SRC = Path(__file__).resolve().parent

TRAIN_LOOP_KEYS = (
    "train.optimizer",
    "train.weight_decay",
    "train.grad_clip",
    "train.checkpoint_every",
    "train.val_every",
    "train.val_batches",
    "train.batch_size",
)


@dataclass(frozen=True)
class Stage:
    params: tuple[str, ...]  # params.yaml keys read (the same lists as dvc.yaml)
    deps: Callable[[Config], list[Path]]
    outs: Callable[[Config], list[Path]]


def _processed(cfg: Config) -> list[Path]:
    d = cfg.paths.processed_dir
    return [d / "train.npz", d / "val.npz", d / "test.npz", d / "norm_stats.json"]


def _models(cfg: Config, *names: str) -> list[Path]:
    return [cfg.paths.models_dir / n for n in names]


STAGES: dict[str, Stage] = {
    "generate": Stage(
        params=("seed", "simulator"),
        deps=lambda cfg: [],
        outs=lambda cfg: [cfg.paths.raw_dir / "synthetic.npz"],
    ),
    "prepare": Stage(
        params=("seed", "data"),
        deps=lambda cfg: (
            [cfg.paths.raw_dir / "synthetic.npz"]
            if cfg.data.source == "synthetic"
            else [Path(cfg.data.path)]
        ),
        outs=_processed,
    ),
    "pretrain": Stage(
        params=("seed", "device", "model", "diffusion", "pretrain", *TRAIN_LOOP_KEYS),
        deps=_processed,
        outs=lambda cfg: _models(cfg, "denoiser.pt"),
    ),
    "train": Stage(
        params=("seed", "device", "model", "diffusion", "train", "sample", "pretrain"),
        deps=lambda cfg: _processed(cfg) + _models(cfg, "denoiser.pt"),
        outs=lambda cfg: _models(cfg, "consistency.pt"),
    ),
    "evaluate": Stage(
        params=("seed", "device", "evaluate", "sample"),
        deps=lambda cfg: _processed(cfg) + _models(cfg, "denoiser.pt", "consistency.pt"),
        outs=lambda cfg: [
            cfg.paths.metrics_dir / "benchmark.json",
            cfg.paths.metrics_dir / "headline.json",
        ],
    ),
    "register": Stage(
        params=("tracking",),
        deps=lambda cfg: [
            *_models(cfg, "consistency.pt"),
            cfg.paths.metrics_dir / "benchmark.json",
        ],
        outs=lambda cfg: [cfg.paths.metrics_dir / "registry.json"],
    ),
}


def run_stage(cfg: Config, name: str, *, resume: bool = False) -> list[Path]:
    """Run one stage inside its MLflow run; returns the stage's output paths."""
    from halocm.tracking import stage_run

    if name == "register":  # opens its own run: the model is logged into it
        from halocm.tracking import register

        print(register(cfg))
        return STAGES[name].outs(cfg)
    with stage_run(cfg, name) as log:
        if name == "generate":
            from halocm.data.synthetic import generate

            generate(cfg)
            log.artifact(cfg.paths.reports_dir / "generated_cutouts.png")
        elif name == "prepare":
            from halocm.data.prepare import prepare

            prepare(cfg)
            log.artifact(cfg.paths.processed_dir / "norm_stats.json")
        elif name == "pretrain":
            from halocm.training import pretrain

            log.artifact(pretrain(cfg, resume=resume, log_metrics=log.metrics))
        elif name == "train":
            from halocm.training import train

            log.artifact(train(cfg, resume=resume, log_metrics=log.metrics))
        elif name == "evaluate":
            from halocm.evaluation.benchmark import evaluate

            log.benchmark(evaluate(cfg), cfg.paths.reports_dir)
        else:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(ORDER)}")
    return STAGES[name].outs(cfg)


def _select(d: dict, key: str):
    for part in key.split("."):
        d = d[part]
    return d


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents)."""
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode())
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def source_digest() -> str:
    """The library's code: a code change invalidates cached stage results."""
    h = hashlib.sha256()
    for path in sorted(SRC.rglob("*.py")):
        h.update(path.relative_to(SRC).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(cfg: Config, name: str) -> str | None:
    """Hash of the stage's params, input files and code (what DVC compares in dvc.lock);
    None when an input is missing (the stage cannot have a valid cached result).

    Outputs are not part of the key: it is computed before the stage runs, and the result is
    stored under it. Whether the outputs on disk are still the cached ones is checked with
    `output_digests` against the digests the cached result recorded.
    """
    stage = STAGES[name]
    deps = stage.deps(cfg)
    if not all(p.exists() for p in deps):  # a directory for data.source camels_cmd
        return None
    raw = cfg.to_dict()
    payload = {
        "stage": name,
        "params": {k: _select(raw, k) for k in stage.params},
        "deps": {str(p): file_digest(p) for p in deps},
        "code": source_digest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def output_digests(cfg: Config, name: str) -> dict[str, str] | None:
    """Path → sha256 of each output of the stage; None when one is missing."""
    outs = STAGES[name].outs(cfg)
    if not all(p.is_file() for p in outs):
        return None
    return {str(p): file_digest(p) for p in outs}


def reproduce() -> bool:
    """`dvc repro` under one MLflow parent run; False when everything was up to date."""
    import os
    import sys

    from dvc.repo import Repo

    from halocm.config import load_config
    from halocm.tracking import pipeline_run

    # Stage commands call `halocm`: make this environment's scripts visible to them.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    with Repo(".") as repo:
        if not repo.status():
            return False
        with pipeline_run(load_config("params.yaml"), "pipeline"):
            repo.reproduce()
    return True


def summary(cfg: Config) -> str:
    """Where the outputs are, the registered version and the headline numbers."""
    bench_path = cfg.paths.metrics_dir / "benchmark.json"
    if not bench_path.is_file():
        return f"no benchmark yet ({bench_path}): run the pipeline first"
    bench = json.loads(bench_path.read_text())
    rows = {(r["sampler"], r["steps"]): r for r in bench["results"]}
    lines = [
        f"model      {cfg.paths.models_dir / 'consistency.pt'} ({bench['mode']}, "
        f"{bench['n_parameters']:,} parameters)",
        f"report     {cfg.paths.reports_dir / 'benchmark.md'}",
        f"plots      {cfg.paths.reports_dir}/{{samples,pk_ratio,quality_vs_nfe,speed_vs_nfe}}.png",
    ]
    registry = cfg.paths.metrics_dir / "registry.json"
    if registry.is_file():
        reg = json.loads(registry.read_text())
        lines.append(
            f"registry   {reg['model']} version {reg['version']} @{reg['alias']} ({reg['gate']})"
        )
    lines.append("")
    lines.append(f"{'':22s}" + "".join(f"{c:>20s}" for c in bench["channels"]) + "     ms/map")
    for key, row in rows.items():
        label = f"{key[0]} {key[1]}" if key[1] else key[0]
        cells = "".join(
            f"{_num(row['channels'][c]['pk_err']):>9s} /{_num(row['channels'][c]['rk_err']):>9s}"
            for c in bench["channels"]
        )
        lines.append(f"{label:22s}{cells}{row['ms_per_map']:11.3f}")
    lines.append("(pk_err / rk_err per channel; lower is better)")
    return "\n".join(lines)


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"
