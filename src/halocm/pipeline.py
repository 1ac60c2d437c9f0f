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
    logs_model: bool = False  # its run logs models/consistency.pt as an MLflow LoggedModel

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
            # model.channel_mult: the map side must halve once per UNet level.
            params=("seed", "data", "model.channel_mult"),
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
            logs_model=True,
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
                    "rank_hist.png",
                ),
                Out(_in("metrics_dir", "benchmark.json"), kind="metrics", cache=False),
                # Flat channel means per sampler/steps, for `dvc exp show`.
                Out(_in("metrics_dir", "headline.json"), kind="metrics", cache=False),
                # Long tables drawn by the top-level PLOTS (templates in .dvc/plots/).
                Out(_in("metrics_dir", "pk_ratio.csv"), cache=False),
                Out(_in("metrics_dir", "quality_vs_nfe.csv"), cache=False),
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


@dataclass(frozen=True)
class Plot:
    """A top-level DVC plot of a long table (`sampler` and `channel` columns): one panel per
    channel, one labelled series per sampler and revision (templates in .dvc/plots/)."""

    title: str
    path: Callable[[Config], Path]
    x: str
    y: str
    template: str
    x_label: str
    y_label: str


PLOTS: dict[str, Plot] = {
    "pk_ratio": Plot(
        "P(k) ratio to the truth",
        _in("metrics_dir", "pk_ratio.csv"),
        x="k",
        y="pk_ratio",
        template="halocm_loglog",
        x_label="k [h/Mpc]",
        y_label="<P_gen> / <P_true>",
    ),
    "r_k": Plot(
        "cross-correlation with the truth",
        _in("metrics_dir", "pk_ratio.csv"),
        x="k",
        y="r",
        template="halocm_logx",
        x_label="k [h/Mpc]",
        y_label="r(k) = P_x / sqrt(P_gen P_true)",
    ),
    "pk_err_vs_nfe": Plot(
        "pk_err versus network evaluations",
        _in("metrics_dir", "quality_vs_nfe.csv"),
        x="nfe",
        y="pk_err",
        template="halocm_loglog",
        x_label="network evaluations per map (NFE)",
        y_label="pk_err = mean |P_gen/P_true - 1|",
    ),
    "rk_err_vs_nfe": Plot(
        "rk_err versus network evaluations",
        _in("metrics_dir", "quality_vs_nfe.csv"),
        x="nfe",
        y="rk_err",
        template="halocm_loglog",
        x_label="network evaluations per map (NFE)",
        y_label="rk_err = mean (1 - r)",
    ),
}


def run_stage(cfg: Config, name: str, *, resume: bool = False) -> list[Path]:
    """Run one stage inside its MLflow run (the params it reads, the splits it reads as
    datasets), holding the lock of its output directories (a second writer is refused);
    returns the stage's output paths."""
    from halocm.lock import output_lock
    from halocm.tracking import stage_run

    stage = STAGES[name]
    module = importlib.import_module(stage.module)
    directories = {path.parent for path in stage.out_paths(cfg)}
    with (
        output_lock(directories, f"halocm {name}"),
        stage_run(cfg.tracking, name, stage_params(cfg, stage), stage_splits(cfg, stage)) as log,
    ):
        if stage.resumable:
            module.run(cfg, log, resume=resume)
        else:
            module.run(cfg, log)
        if stage.logs_model and log.run_id is not None:
            from halocm.stages.register import log_consistency_model

            log_consistency_model(cfg, "val")
    if log.parent_by_dvc and name == list(STAGES)[-1]:
        # A `dvc exp run` or `dvc repro` parent gets its headline when its last stage ends.
        summarize(log.parent_id, cfg)
    return stage.out_paths(cfg)


def stage_params(cfg: Config, stage: Stage) -> dict:
    """The params keys the stage lists in dvc.yaml, as a nested dict; of the method sections
    only train.mode's, without its `search` (tune's, not the stage's)."""
    raw = cfg.to_dict()
    skip = set(methods()) - {cfg.train.mode}
    out: dict = {}
    for key in stage.params:
        if key.split(".")[0] in skip:
            continue
        *parents, last = key.split(".")
        node, src = out, raw
        for part in parents:
            node, src = node.setdefault(part, {}), src[part]
        value = src[last]
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "search"}
        node[last] = value
    return out


def stage_splits(cfg: Config, stage: Stage) -> dict[str, Path]:
    """The prepared splits among the stage's deps: split name → file."""
    deps = set(stage.deps(cfg))
    return {s: split_path(cfg, s) for s in ("train", "val", "test") if split_path(cfg, s) in deps}


def summarize(run_id: str | None, cfg: Config) -> None:
    """A pipeline's headline on its parent run (halocm.tracking.summarize)."""
    from halocm.tracking import summarize as put

    splits = {s: split_path(cfg, s) for s in ("train", "val", "test")}
    put(
        run_id,
        cfg.to_dict(),
        splits=splits,
        metrics_dir=cfg.paths.metrics_dir,
        reports_dir=cfg.paths.reports_dir,
    )


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


def dvc_plots(cfg: Config) -> list[dict]:
    """dvc.yaml's top-level `plots` list for the paths of `cfg`."""
    out = []
    for name, p in PLOTS.items():
        path = p.path(cfg)
        rel = path.relative_to(ROOT).as_posix() if path.is_absolute() else path.as_posix()
        attrs = {"title": p.title, "template": p.template, "x": p.x, "y": {rel: p.y}}
        out.append({name: attrs | {"x_label": p.x_label, "y_label": p.y_label}})
    return out


def dvc_yaml(cfg: Config) -> str:
    body = {"stages": dvc_stages(cfg), "plots": dvc_plots(cfg)}
    return DVC_HEADER + yaml.safe_dump(body, sort_keys=False, width=100, allow_unicode=True)


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


def reproduce(
    overrides: list[str] | None = None, tags: dict[str, str] | None = None
) -> tuple[bool, str | None]:
    """`dvc repro`, or with `key=value` overrides `dvc exp run -S key=value ...` (DVC writes
    them into params.yaml and records an experiment), under one MLflow parent run that gets
    the pipeline's headline (`summarize`). Returns (whether anything ran, the experiment's
    name)."""
    import os
    import sys

    from dvc.repo import Repo

    from halocm.config import load_config
    from halocm.tracking import pipeline_run, set_tags

    items = list(overrides or [])
    settings = load_config("params.yaml", items).tracking  # a bad key stops here, in one line
    # Stage commands call `halocm`: make this environment's scripts visible to them.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    experiment = None
    with Repo(".") as repo:
        if not items and not repo.status():
            return False, None
        tags = {"launcher": "halocm pipeline", **(tags or {})}
        name = " ".join(["pipeline", *items])[:250]  # the values tell runs apart in the table
        with pipeline_run(settings, name, tags) as run_id:
            if items:
                revs = list(repo.experiments.run(params=items))
                experiment = next(iter(repo.experiments.get_exact_name(revs).values()), None)
                if run_id and experiment:
                    set_tags(run_id, {"dvc_exp_name": experiment})
            else:
                repo.reproduce()
            summarize(run_id, load_config("params.yaml"))
    return True, experiment


def summary(cfg: Config) -> str:
    """What the pipeline made, where it is, and its headline numbers: the last thing
    `halocm pipeline` prints."""
    bench_path = cfg.paths.metrics_dir / "benchmark.json"
    if not bench_path.is_file():
        return f"no benchmark yet ({bench_path}): run the pipeline first"
    bench = json.loads(bench_path.read_text())
    reports = cfg.paths.reports_dir
    figures = ",".join(sorted(p.stem for p in Path(reports).glob("*.png")))
    lines = [
        f"model      {consistency_path(cfg)} ({bench['mode']}, "
        f"{bench['n_parameters']:,} parameters)",
        f"report     {reports / 'benchmark.md'}",
        f"figures    {reports}/{{{figures}}}.png",
        "plots      dvc plots show (→ dvc_plots/index.html); dvc plots diff to compare",
    ]
    registry = cfg.paths.metrics_dir / "registry.json"
    if registry.is_file():
        reg = json.loads(registry.read_text())
        where = f"version {reg['version']} @{reg['alias']}" if reg["version"] else "not registered"
        gate = reg["gate"] if len(reg["gate"]) < 90 else f"{reg['gate'][:80]}… ({registry})"
        lines.append(f"registry   {reg['model']} {where} ({gate})")
    if cfg.tracking.enabled:
        lines.append(
            "mlflow     make ui → http://127.0.0.1:5000 (experiment "
            + cfg.tracking.experiment
            + ")"
        )
    lines += ["", *headline_table(bench)]
    return "\n".join(lines)


def headline_table(bench: dict) -> list[str]:
    """One line per benchmark row: channel means of pk_err and rk_err, the worst channel's
    excess over the oracle, ms per map and the speed-up over the teacher."""
    from halocm.tracking import worst_vs_oracle

    rows = bench["results"]
    oracle = next((r for r in rows if r["sampler"] == "oracle"), None)
    teacher = next((r for r in rows if r["sampler"] == "teacher"), None)
    lines = [
        f"{'':16s}{'pk_err':>9s}{'rk_err':>9s}{'worst vs oracle':>17s}{'ms/map':>10s}"
        f"{'speed-up':>10s}"
    ]
    for row in rows:
        channels = [m for n, m in row["channels"].items() if n != "total"]
        means = [_mean([m.get(k) for m in channels]) for k in ("pk_err", "rk_err")]
        label = f"{row['sampler']} {row['steps']}" if row["nfe"] else row["sampler"]
        worst = worst_vs_oracle(row, oracle) if row["sampler"] != "oracle" else None
        timed = row["nfe"] > 0 and row["ms_per_map"] > 0
        speed = teacher["ms_per_map"] / row["ms_per_map"] if teacher and timed else None
        lines.append(
            f"{label:16s}{_num(means[0]):>9s}{_num(means[1]):>9s}{_num(worst):>17s}"
            f"{_num(row['ms_per_map'] if timed else None):>10s}"
            f"{(f'{speed:.1f}x' if speed else '—'):>10s}"
        )
    channels = ", ".join(n for n in bench["channels"] if n != "total")
    lines.append(
        f"(means over {channels}; pk_err = mean |P_gen/P_true - 1|, rk_err = mean 1 - r(k), "
        "lower is better; every channel and the total: reports/benchmark.md)"
    )
    return lines


def _mean(values) -> float | None:
    if not values or not all(isinstance(v, int | float) for v in values):
        return None
    return float(sum(values) / len(values))


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"
