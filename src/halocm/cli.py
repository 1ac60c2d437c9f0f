"""The `halocm` command: one subcommand per stage, each a thin wrapper around a stage function.

The DVC stages' commands are made from the stage graph (halocm.pipeline.STAGES). Every
subcommand takes `--params` and repeatable `--set a.b=value`. Expected failures print one line
and exit 2 (bad config, data or other input) or 1 (a full disk, a read-only folder, a busy
output directory, an unreachable service); they are never a bare traceback.
"""

from __future__ import annotations

import functools
import os
import traceback
from pathlib import Path
from typing import Annotated

import typer

from halocm.config import Config, load_config
from halocm.errors import classify
from halocm.pipeline import STAGES, Stage

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


ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint")]


def one_line_errors(fn):
    """Turn expected failures into `halocm <command>: error: <message>` on stderr: exit 2
    for bad input, 1 for a fault of the machine or a service (halocm.errors). With
    HALOCM_DEBUG=1 the traceback is printed first. Bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            expected = classify(err)
            if expected is None:
                raise
            code, msg = expected
            if os.environ.get("HALOCM_DEBUG") == "1":
                traceback.print_exception(err)
            typer.echo(f"halocm {fn.__name__}: error: {msg}", err=True)
            raise typer.Exit(code) from None

    return wrapper


def _config(params: Path, overrides: list[str] | None) -> Config:
    return load_config(params, overrides or [])


def _stage_command(stage: Stage):
    """`halocm <stage>`: run the stage of the graph, then name its outputs."""

    def run(params: Path, overrides: list[str] | None, resume: bool = False) -> None:
        from halocm.pipeline import run_stage

        cfg = _config(params, overrides)
        for path in run_stage(cfg, stage.name, resume=resume):
            typer.echo(f"wrote {path}")

    if stage.resumable:

        def command(
            params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None, resume: ResumeOpt = False
        ) -> None:
            run(params, set_, resume)

    else:

        def command(params: ParamsOpt = PARAMS_DEFAULT, set_: SetOpt = None) -> None:
            run(params, set_)

    command.__name__ = stage.name  # the `halocm <name>: error:` prefix
    command.__doc__ = stage.help
    return one_line_errors(command)


for _stage in STAGES.values():
    app.command(name=_stage.name)(_stage_command(_stage))


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


@app.command("dvc-yaml")
@one_line_errors
def dvc_yaml(
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option(help="where to write it")] = Path("dvc.yaml"),
) -> None:
    """Write dvc.yaml from the stage graph (paths from the params file)."""
    from halocm.io import write_text
    from halocm.pipeline import dvc_yaml as render

    write_text(out, render(_config(params, set_)))
    typer.echo(f"wrote {out}")


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
    from halocm.stages.sample import sample as run

    typer.echo(
        run(
            _config(params, set_),
            model=model,
            condition=condition,
            out=out,
            steps=steps,
            realizations=realizations,
            seed=seed,
            device=device,
        )
    )


@app.command()
@one_line_errors
def tune(
    n_trials: int = typer.Option(None, "--n-trials", min=1),
    storage: str = typer.Option(None, help="Optuna storage: journal file path or SQLAlchemy URL"),
    study_name: str = typer.Option(None, "--study-name"),
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
) -> None:
    """Optuna study over the `search` knobs of train.mode's section and the learning rate."""
    from halocm.stages.tune import tune as run

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
    steps: int = typer.Option(None, min=1, help="sampling steps (default paint.sampling_steps)"),
    realizations: int = typer.Option(None, min=1),
    mass_min: float = typer.Option(None, "--mass-min"),
    batch_size: int = typer.Option(None, "--batch-size", min=1),
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
) -> None:
    """Paint baryons into a whole DMO box from its halo catalogue."""
    from halocm.stages.paint import paint as run

    typer.echo(
        run(
            _config(params, set_),
            model=model,
            dmo=dmo,
            halos=halos,
            box_size=box_size,
            out=out,
            sampling_steps=steps,
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

    serve_ui(_config(params, set_).tracking, port=port)


def main() -> None:
    app()
