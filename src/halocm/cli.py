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

ParamsOpt = Annotated[
    Path, typer.Option("--params", help="params file: every value of every stage")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="override one value of the params file, KEY=VALUE (VALUE read as YAML), e.g. "
        "ct.target_ema=0.99; repeatable",
    ),
]
PARAMS_DEFAULT = Path("params.yaml")


class UsageError(ValueError):
    """Bad command-line input (not config, not data)."""


ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume", help="continue from the last checkpoint (models/checkpoints/<name>-last.pt)"
    ),
]


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
def pipeline(
    set_file: Annotated[
        Path | None,
        typer.Option(
            "--set-file",
            help="YAML file of dotted keys → values to run with (e.g. the tuned values "
            "`halocm tune` writes); applied like --set",
        ),
    ] = None,
    set_: SetOpt = None,
    params: ParamsOpt = PARAMS_DEFAULT,
) -> None:
    """The whole pipeline with DVC under one MLflow parent run, then a summary: `dvc repro`,
    or with --set-file/--set `dvc exp run -S key=value ...` (DVC writes the values into
    params.yaml and records an experiment)."""
    from halocm.config import read_overrides
    from halocm.pipeline import reproduce, summary
    from halocm.tracking import study_link

    if params != PARAMS_DEFAULT:
        raise UsageError(
            "the DVC pipeline reads params.yaml: change values with --set key=value or "
            "--set-file FILE (run as `dvc exp run -S`)"
        )
    overrides = [*(read_overrides(set_file) if set_file else []), *(set_ or [])]
    ran, experiment = reproduce(overrides, tags=study_link(set_file) if set_file else None)
    if not ran:
        typer.echo("pipeline up to date: nothing to rerun")
    elif experiment:
        typer.echo(f"experiment {experiment}: its values are now in params.yaml (dvc exp show)")
    typer.echo(summary(_config(params, None)))


@app.command("dvc-yaml")
@one_line_errors
def dvc_yaml(
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option(help="where to write the rendered file")] = Path("dvc.yaml"),
) -> None:
    """Write dvc.yaml from the stage graph (paths from the params file)."""
    from halocm.io import write_text
    from halocm.pipeline import dvc_yaml as render

    write_text(out, render(_config(params, set_)))
    typer.echo(f"wrote {out}")


@app.command()
@one_line_errors
def sample(
    model: Annotated[Path, typer.Option(help="checkpoint, e.g. models/consistency.pt")],
    condition: Annotated[
        Path,
        typer.Option(
            help=".npz with `condition` (N, Cc, H, W), DMO mass per pixel [Msun/h], and the "
            "model's `params` (N, P)"
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="output .npz: `samples` (N, R, C, H, W), mass per pixel [Msun/h]")
    ],
    steps: int = typer.Option(1, min=1, help="sampling steps = network evaluations per map"),
    realizations: int = typer.Option(1, min=1, help="maps drawn per condition (R)"),
    seed: int = typer.Option(0, help="random seed; map i, draw r uses (seed, i, r)"),
    device: str = typer.Option("auto", help="cpu, cuda, or auto (cuda when available)"),
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
    n_trials: int = typer.Option(
        None, "--n-trials", min=1, help="trials this process runs (default: tune.n_trials)"
    ),
    storage: str = typer.Option(
        None,
        help="Optuna storage: a journal file, or a database URL such as "
        "postgresql+psycopg2://U:P@HOST/optuna (default: tune.storage, else optuna.journal)",
    ),
    study_name: str = typer.Option(
        None, "--study-name", help="study to create or join (default: tune.study_name)"
    ),
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
    model: Annotated[Path, typer.Option(help="checkpoint, e.g. models/consistency.pt")],
    dmo: Annotated[
        Path,
        typer.Option(help="whole-box DMO map: .npy, N × N, mass per pixel [Msun/h], rows = y"),
    ],
    halos: Annotated[
        Path,
        typer.Option(
            help="halo catalogue .csv: x, y [Mpc/h], m200 [Msun/h], and the model's "
            "parameter columns"
        ),
    ],
    box_size: Annotated[
        float,
        typer.Option("--box-size", help="box side L [Mpc/h]; L/N must be the model's pixel side"),
    ],
    out: Annotated[
        Path, typer.Option(help="output .npz (painted maps, coverage) and OUT_halos.csv")
    ],
    steps: int = typer.Option(
        None, min=1, help="sampling steps per halo (default: paint.sampling_steps)"
    ),
    realizations: int = typer.Option(
        None, min=1, help="maps drawn per halo (default: paint.realizations)"
    ),
    mass_min: float = typer.Option(
        None, "--mass-min", help="paint halos of M200 ≥ this [Msun/h] (default: paint.mass_min)"
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="cutouts per network call (default: paint.batch_size)"
    ),
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
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
    port: int = typer.Option(5000, help="port on 127.0.0.1"),
) -> None:
    """Start the MLflow UI on 127.0.0.1 for this project's runs."""
    from halocm.tracking import serve_ui

    raise typer.Exit(serve_ui(_config(params, set_).tracking, port=port))


@app.command()
@one_line_errors
def box(
    out: Annotated[
        Path, typer.Option(help="directory for dmo.npy, halos.csv and truth.npz")
    ] = Path("box"),
    pixels: int = typer.Option(
        256,
        min=8,
        help="box side in pixels N; one pixel is simulator.box_size / simulator.resolution "
        "[Mpc/h] (0.195 by default: 256 pixels = 50 Mpc/h)",
    ),
    halos: int = typer.Option(100, min=1, help="host halos in the box"),
    seed: int = typer.Option(None, help="random seed (default: seed in the params file)"),
    params: ParamsOpt = PARAMS_DEFAULT,
    set_: SetOpt = None,
) -> None:
    """Simulate a whole periodic DMO box, its halo catalogue and its true hydro maps (the
    simulator's box mode): the inputs of `halocm paint`, and the truth to score it."""
    from halocm.stages.box import box as run

    typer.echo(run(_config(params, set_), out=out, pixels=pixels, halos=halos, seed=seed))


def main() -> None:
    app()
