"""The `halocm` command: one subcommand per stage, each a thin wrapper around a library function.

Every subcommand takes `--params` and repeatable `--set a.b=value`. Expected failures (bad
config, bad data, bad input) print one line and exit 2; they are never a bare traceback.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from halocm.config import Config, ConfigError, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Paint baryons onto dark-matter halos with consistency models.",
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params file")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a.b=value")]
PARAMS_DEFAULT = Path("params.yaml")


class UsageError(ValueError):
    """Bad command-line input (not config, not data)."""


def _expected_errors() -> tuple[type[BaseException], ...]:
    from halocm.data.sources import DataError
    from halocm.training import TrainingDiverged

    return (
        ConfigError,
        DataError,
        TrainingDiverged,
        UsageError,
        ValueError,
        FileNotFoundError,
        RuntimeError,
    )


def one_line_errors(fn):
    """Turn expected failures into `halocm <command>: error: <message>` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _expected_errors() as err:
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            typer.echo(f"halocm {fn.__name__}: error: {msg}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _config(params: Path, overrides: list[str] | None) -> Config:
    return load_config(params, overrides or [])


def _stage(name: str, params: Path, overrides: list[str] | None, resume: bool = False) -> None:
    from halocm.pipeline import run_stage

    for path in run_stage(_config(params, overrides), name, resume=resume):
        typer.echo(f"wrote {path}")


ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint")]


@app.command()
@one_line_errors
def generate(params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None) -> None:
    """Simulate paired DMO → hydro halo maps → data/raw/synthetic.npz."""
    _stage("generate", params, set_)


@app.command()
@one_line_errors
def prepare(params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None) -> None:
    """Validate, split by group and normalise the raw data → data/processed/."""
    _stage("prepare", params, set_)


@app.command()
@one_line_errors
def pretrain(
    params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None, resume: ResumeOpt = False
) -> None:
    """EDM denoising pretraining → models/denoiser.pt (teacher and warm start)."""
    _stage("pretrain", params, set_, resume)


@app.command()
@one_line_errors
def train(
    params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None, resume: ResumeOpt = False
) -> None:
    """Consistency training (train.mode: ct, ict, cd, ect) → models/consistency.pt."""
    _stage("train", params, set_, resume)


@app.command()
@one_line_errors
def evaluate(params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None) -> None:
    """Benchmark samplers × steps on the test split → metrics/benchmark.json, reports/."""
    _stage("evaluate", params, set_)


@app.command()
@one_line_errors
def register(params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None) -> None:
    """Log the model to MLflow, register a version; `champion` moves only if the gate passes."""
    _stage("register", params, set_)


@app.command()
@one_line_errors
def pipeline(params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None) -> None:
    """The whole pipeline with DVC (`dvc repro` under one MLflow parent run), then a summary."""
    from halocm.pipeline import reproduce, summary

    if params != PARAMS_DEFAULT or set_:
        raise UsageError(
            "the DVC pipeline reads params.yaml: edit it, or use "
            "`dvc exp run -S key=value` for a one-off change"
        )
    if not reproduce():
        typer.echo("pipeline up to date: nothing to rerun")
    typer.echo(summary(_config(params, set_)))


@app.command()
@one_line_errors
def sample(
    model: Annotated[Path, typer.Option(help="checkpoint (.pt)")],
    condition: Annotated[Path, typer.Option(help=".npz with `condition` (and `params`)")],
    out: Annotated[Path, typer.Option(help="output .npz")],
    steps: int = typer.Option(1, min=1),
    realizations: int = typer.Option(1, min=1),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
) -> None:
    """Sample hydro maps for the DMO maps in CONDITION → OUT (samples: N, R, C, H, W)."""
    from halocm.api import load_model
    from halocm.io import save_npz

    gen = load_model(model, device=device)
    inputs = _read_condition(condition)
    maps = gen.sample(
        inputs["condition"],
        inputs.get("params"),
        n_steps=steps,
        n_realizations=realizations,
        seed=seed,
    )
    save_npz(out, samples=maps, channel_names=np.array(gen.channel_names))
    typer.echo(f"wrote {out}: samples {maps.shape}, {gen.nfe(steps)} NFE per map")


def _read_condition(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UsageError(f"{path}: condition file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "condition" not in z:
                raise UsageError(f"{path}: missing key 'condition' (N, Cc, H, W)")
            return {k: z[k] for k in z.files if k in ("condition", "params")}
    except (OSError, ValueError) as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(f"{path}: not a readable .npz ({err})") from None


@app.command()
@one_line_errors
def tune(
    n_trials: int = typer.Option(None, "--n-trials", min=1),
    storage: str = typer.Option(None, help="Optuna storage: journal file path or SQLAlchemy URL"),
    study_name: str = typer.Option(None, "--study-name"),
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
) -> None:
    """Optuna study over ema_decay, ct_n_steps, learning rate and loss."""
    from halocm.tuning import tune as run

    typer.echo(
        run(_config(params, set_), n_trials=n_trials, storage=storage, study_name=study_name)
    )


@app.command()
@one_line_errors
def paint(
    model: Annotated[Path, typer.Option(help="checkpoint (.pt)")],
    dmo: Annotated[Path, typer.Option(help="full-box DMO map (.npy, mass per pixel)")],
    halos: Annotated[Path, typer.Option(help="halo catalogue (.csv: x, y, m200)")],
    box_size: Annotated[float, typer.Option("--box-size", help="box side, Mpc/h")],
    out: Annotated[Path, typer.Option(help="output .npz")],
    steps: int = typer.Option(None, min=1),
    realizations: int = typer.Option(None, min=1),
    mass_min: float = typer.Option(None, "--mass-min"),
    batch_size: int = typer.Option(None, "--batch-size", min=1),
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
) -> None:
    """Paint baryons into a whole DMO box from its halo catalogue."""
    from halocm.painting import paint_cli

    cfg = _config(params, set_)
    typer.echo(
        paint_cli(
            cfg,
            model=model,
            dmo=dmo,
            halos=halos,
            box_size=box_size,
            out=out,
            steps=steps,
            realizations=realizations,
            mass_min=mass_min,
            batch_size=batch_size,
        )
    )


@app.command()
@one_line_errors
def ui(
    params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None, port: int = typer.Option(5000)
) -> None:
    """Start the MLflow UI on 127.0.0.1 for this project's runs."""
    from halocm.tracking import serve_ui

    serve_ui(_config(params, set_), port=port)


def main() -> None:
    app()
