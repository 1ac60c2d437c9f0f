"""The stage graph: every DVC stage declared once — its module, the params keys it reads, its
data deps and its outs — and everything that follows from it.

`dvc.yaml` is generated from STAGES (`halocm dvc-yaml`), with each stage's code deps the
static import closure of its module inside src/halocm; the CLI's stage commands and the
Prefect flow iterate STAGES and run them through `run_stage`; `fingerprint` is what the
Prefect cache keys on, the same params, deps and code that DVC tracks.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from halocm.config import Config, methods
from halocm.stages.common import (
    consistency_path,
    denoiser_path,
    mean_path,
    norm_stats_path,
    source_path,
    split_path,
    synthetic_path,
)

SRC = Path(__file__).resolve().parent  # src/halocm
ROOT = SRC.parents[1]  # the project: dvc.yaml lists code relative to it


@dataclass(frozen=True)
class Out:
    """One output and its DVC attributes: the dvc.yaml list it goes in (`outs`, `metrics` or
    `plots`), whether DVC caches it, and a plot's x, y and template."""

    path: Callable[[Config], Path]
    kind: str = "outs"
    cache: bool = True
    plot: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # defines run(cfg, log[, resume=...]); its import closure is the code dep
    help: str
    params: tuple[str, ...]  # the params.yaml keys it reads
    deps: Callable[[Config], list[Path]]  # the data it reads
    outs: tuple[Out, ...]
    resumable: bool = False  # takes --resume (continue from the last checkpoint)
    loads: tuple[str, ...] = ()  # modules it runs without importing them (by file path)
    active: Callable[[Config], bool] = lambda cfg: True  # the Prefect flow skips it if False

    def out_paths(self, cfg: Config) -> list[Path]:
        return [out.path(cfg) for out in self.outs]


def _in(directory: str, name: str) -> Callable[[Config], Path]:
    """The file `name` in the configured `paths.<directory>`."""
    return lambda cfg: Path(getattr(cfg.paths, directory)) / name


def _split(name: str) -> Callable[[Config], Path]:
    """A split of the prepared data: `train`, `val` or `test`."""
    return lambda cfg: split_path(cfg, name)


def _all(*paths: Callable[[Config], Path]) -> Callable[[Config], list[Path]]:
    return lambda cfg: [path(cfg) for path in paths]


def _reports(*names: str) -> tuple[Out, ...]:
    return tuple(Out(_in("reports_dir", n), cache=False) for n in names)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            name="generate",
            module="halocm.stages.generate",
            help="Simulate paired DMO → hydro halo maps → data/raw/synthetic.npz.",
            params=("seed", "simulator"),
            deps=_all(),
            outs=(Out(synthetic_path), *_reports("generated_cutouts.png")),
        ),
        Stage(
            name="prepare",
            module="halocm.stages.prepare",
            help="Validate, split by group and normalise the raw data → data/processed/.",
            params=("seed", "data"),
            deps=_all(source_path),
            outs=(
                Out(_split("train")),
                Out(_split("val")),
                Out(_split("test")),
                Out(norm_stats_path),
            ),
        ),
        Stage(
            name="regress",
            module="halocm.stages.regress",
            help="The conditional-mean network E[target | condition] → models/mean.pt.",
            params=("seed", "device", "model", "diffusion", "optimizer", "mean"),
            deps=_all(_split("train"), _split("val"), norm_stats_path),
            outs=(Out(mean_path),),
            resumable=True,
        ),
        Stage(
            name="pretrain",
            module="halocm.stages.pretrain",
            help="EDM denoising pretraining → models/denoiser.pt (teacher and warm start).",
            params=("seed", "device", "model", "diffusion", "optimizer", "mean", "pretrain"),
            deps=_all(_split("train"), _split("val"), norm_stats_path, mean_path),
            outs=(Out(denoiser_path),),
            resumable=True,
            active=lambda cfg: cfg.pretrain.enabled,
        ),
        Stage(
            name="train",
            module="halocm.stages.train",
            help="Consistency training (train.mode: ct, cd, ict, ect) → models/consistency.pt.",
            # Every method section: `dvc exp run -S train.mode=...` needs no new dvc.yaml.
            # Of `sample`, only the levels the validation score samples through.
            params=(
                "seed",
                "device",
                "model",
                "diffusion",
                "optimizer",
                "mean",
                "pretrain",
                "train",
                *methods(),
                "sample.intermediate_sigmas",
            ),
            deps=_all(_split("train"), _split("val"), norm_stats_path, mean_path, denoiser_path),
            outs=(Out(consistency_path),),
            resumable=True,
        ),
        Stage(
            name="evaluate",
            module="halocm.stages.evaluate",
            help="Benchmark samplers × steps on the test split → metrics/benchmark.json, reports/.",
            params=("seed", "device", "evaluate", "sample"),
            # train.npz: the baseline's mean channel fractions.
            deps=_all(_split("train"), _split("test"), denoiser_path, consistency_path),
            outs=(
                *_reports(
                    "benchmark.md",
                    "samples.png",
                    "pk_ratio.png",
                    "quality_vs_nfe.png",
                    "speed_vs_nfe.png",
                    "profiles.png",
                ),
                Out(_in("metrics_dir", "benchmark.json"), kind="metrics", cache=False),
                # Flat channel means per sampler/steps, for `dvc exp show`.
                Out(_in("metrics_dir", "headline.json"), kind="metrics", cache=False),
                Out(
                    _in("metrics_dir", "pk_ratio.csv"),
                    kind="plots",
                    cache=False,
                    plot={"x": "k", "y": "pk_ratio", "template": "linear"},
                ),
                Out(
                    _in("metrics_dir", "quality_vs_nfe.csv"),
                    kind="plots",
                    cache=False,
                    plot={"x": "nfe", "y": "pk_err", "template": "scatter"},
                ),
            ),
        ),
        Stage(
            name="register",
            module="halocm.stages.register",
            help="Log the model to MLflow, register a version; `champion` moves only if the "
            "gate passes.",
            params=("tracking", "sample"),
            # test.npz: the logged model's input example.
            deps=_all(consistency_path, _in("metrics_dir", "benchmark.json"), _split("test")),
            outs=(Out(_in("metrics_dir", "registry.json"), cache=False),),
            loads=("halocm.mlflow_model",),  # logged as code, run when the model loads
        ),
    )
}


def run_stage(cfg: Config, name: str, *, resume: bool = False) -> list[Path]:
    """Run one stage inside its MLflow run, holding the lock of its output directories (a
    second writer is refused); returns the stage's output paths."""
    from halocm.lock import output_lock
    from halocm.tracking import stage_run

    stage = STAGES[name]
    module = importlib.import_module(stage.module)
    directories = {path.parent for path in stage.out_paths(cfg)}
    with (
        output_lock(directories, f"halocm {name}"),
        stage_run(cfg.tracking, name, cfg.to_dict()) as log,
    ):
        if stage.resumable:
            module.run(cfg, log, resume=resume)
        else:
            module.run(cfg, log)
    return stage.out_paths(cfg)


# ------------------------------------------------------------------ code: import closures


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file of module `name` inside the package at `src` (a package's __init__.py), or
    None for a module outside it."""
    parts = name.split(".")
    if parts[0] != src.name:
        return None
    base = src.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path, package: str, src: Path) -> set[str]:
    """Modules named by every import statement in `path`, those inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the containing package upwards
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            # `from a import b` imports module a.b when b is a module, else a name of a.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.add(sub if module_file(sub, src) is not None else base)
    return names


def import_closure(module: str, src: Path = SRC) -> list[Path]:
    """The files inside the package at `src` (src/halocm) that running `module` imports,
    transitively: every import statement (function-level ones included) is followed. The
    `__init__.py` of each package on the way is included as a file; its own imports are
    followed only when the package itself is imported (halocm's lazy `halocm.load_model`
    hook is not the stages' doing)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name, src)
        if path is None or path in seen:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo.extend(_imported(path, package, src))
    files = set(seen)
    for path in seen:
        for parent in path.parents:
            if parent == src.parent:
                break
            if (parent / "__init__.py").is_file():
                files.add(parent / "__init__.py")
    return sorted(files)


def code_deps(stage: Stage) -> list[Path]:
    """The stage's code: the import closure of its module and of the modules it `loads`."""
    return sorted({p for m in (stage.module, *stage.loads) for p in import_closure(m)})


# ------------------------------------------------------------------ dvc.yaml


DVC_HEADER = (
    "# GENERATED from halocm.pipeline.STAGES by `halocm dvc-yaml`: edit the stage graph, not\n"
    "# this file. Code deps are each stage's import closure inside src/halocm.\n"
)


def dvc_stages(cfg: Config) -> dict:
    """dvc.yaml's `stages` mapping for the paths of `cfg`."""

    def rel(path: Path) -> str:
        return path.relative_to(ROOT).as_posix() if path.is_absolute() else path.as_posix()

    out = {}
    for stage in STAGES.values():
        entry: dict = {
            "cmd": f"halocm {stage.name}",
            "deps": [rel(p) for p in stage.deps(cfg)] + [rel(p) for p in code_deps(stage)],
            "params": list(stage.params),
        }
        for o in stage.outs:
            attrs = ({} if o.cache else {"cache": False}) | o.plot
            path = rel(o.path(cfg))
            entry.setdefault(o.kind, []).append({path: attrs} if attrs else path)
        out[stage.name] = entry
    return out


def dvc_yaml(cfg: Config) -> str:
    return DVC_HEADER + yaml.safe_dump({"stages": dvc_stages(cfg)}, sort_keys=False, width=100)


# ------------------------------------------------------------------ Prefect's cache key


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


def code_digest(stage: Stage) -> str:
    """The stage's code (its import closure): editing a module it runs invalidates it."""
    h = hashlib.sha256()
    for path in code_deps(stage):
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
        "code": code_digest(stage),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def output_digests(cfg: Config, name: str) -> dict[str, str] | None:
    """Path → sha256 of each output of the stage; None when one is missing."""
    outs = STAGES[name].out_paths(cfg)
    if not all(p.exists() for p in outs):
        return None
    return {str(p): file_digest(p) for p in outs}


# ------------------------------------------------------------------ the whole pipeline


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
        with pipeline_run(load_config("params.yaml").tracking, "pipeline"):
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
        f"model      {consistency_path(cfg)} ({bench['mode']}, "
        f"{bench['n_parameters']:,} parameters)",
        f"report     {cfg.paths.reports_dir / 'benchmark.md'}",
        f"plots      {cfg.paths.reports_dir}/{{samples,pk_ratio,quality_vs_nfe,speed_vs_nfe,"
        "profiles}.png",
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
