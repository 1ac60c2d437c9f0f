"""Prefect flow: the halocm pipeline, one task per stage of the stage graph (halocm.pipeline).

Run once (no server needed):
    python flows/pipeline.py [--params params.yaml] [--set-file tuned.yaml] [--set k=v ...]
A stage whose params, input files and code (its import closure) are unchanged, and whose outputs
are still the ones it wrote, is a cache hit and is skipped; the log says `stage NAME: cached` or
`stage NAME: ran`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from halocm.config import load_config, read_overrides
from halocm.pipeline import STAGES, fingerprint, output_digests, run_stage, summarize
from halocm.tracking import pipeline_run, study_link


def _retry_on_io_error(task, task_run, state) -> bool:
    """Retry transient I/O failures only; a bad value fails at once."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


def _stage_cache_key(context, parameters) -> str | None:
    cfg = load_config(parameters["params"], parameters["overrides"])
    key = fingerprint(cfg, parameters["name"])
    # None → no cache: an input is missing (the stage will fail and say which).
    return None if key is None else f"halocm-{parameters['name']}-{key}"


@task(
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_on_io_error,
    cache_key_fn=_stage_cache_key,
    persist_result=True,
    task_run_name="{name}",
)
def stage(name: str, params: str, overrides: list[str]) -> dict[str, str]:
    """Run one stage; the result maps each output path to its sha256 (checked on a cache hit)."""
    cfg = load_config(params, overrides)
    run_stage(cfg, name)
    digests = output_digests(cfg, name)
    if digests is None:
        raise RuntimeError(f"stage {name} did not write all of its outputs")  # no retry
    return digests


def run_cached(name: str, params: str, overrides: list[str]) -> tuple[dict[str, str], bool]:
    """Run a stage unless its cached result is valid; returns (output digests, cached).

    The cache key covers params, input files and code, not the outputs (it is computed before
    the stage runs), so a hit is only taken when the outputs on disk are still the ones the
    cached run wrote. Otherwise the stage reruns with refresh_cache, which also replaces the
    stale cache record.
    """
    on_disk = output_digests(load_config(params, overrides), name)
    if on_disk is not None:
        state = stage(name, params, overrides, return_state=True)
        result = state.result()  # raises when the stage failed
        if state.name != "Cached" or result == on_disk:
            return result, state.name == "Cached"
    return stage.with_options(refresh_cache=True)(name, params, overrides), False


@task(cache_policy=NO_CACHE)
def publish_benchmark(metrics_dir: str, reports_dir: str) -> None:
    """The benchmark as Prefect artifacts: the Markdown report and a table of headline rows."""
    import json

    from halocm.evaluation.report import results_table

    report = Path(reports_dir) / "benchmark.md"
    create_markdown_artifact(
        key="halocm-benchmark", markdown=report.read_text(), description="halocm benchmark report"
    )
    table = results_table(json.loads((Path(metrics_dir) / "benchmark.json").read_text()))
    create_table_artifact(
        key="halocm-benchmark-table",
        table=table.round(5).to_dict(orient="records"),
        description="pk_err, rk_err, SSIM, PSNR per sampler and channel",
    )


@flow(name="halocm-pipeline", log_prints=True)
def pipeline(
    params: str = "params.yaml", overrides: list[str] | None = None, set_file: str | None = None
) -> dict:
    """generate → prepare → pretrain → train → evaluate → register, under one MLflow parent
    run; `set_file` (e.g. the tuned values of `halocm tune`) and `overrides` (key=value)
    change values as --set does.

    Returns {"outputs": {stage: [paths]}, "ran": [stages], "cached": [stages]}.
    """
    overrides = [*(read_overrides(set_file) if set_file else []), *(overrides or [])]
    cfg = load_config(params, overrides)
    outputs, ran, cached = {}, [], []
    tags = {"launcher": "prefect", "prefect_flow_run": str(flow_run.id)}
    if set_file:
        tags.update(study_link(set_file))
    name = " ".join(["pipeline (prefect)", *overrides])[:250]
    with pipeline_run(cfg.tracking, name, tags) as run_id:
        for name, stage in STAGES.items():
            if not stage.active(cfg):
                continue
            digests, hit = run_cached(name, params, overrides)
            outputs[name] = list(digests)
            (cached if hit else ran).append(name)
            print(f"stage {name}: {'cached' if hit else 'ran'}")
        publish_benchmark(str(cfg.paths.metrics_dir), str(cfg.paths.reports_dir))
        summarize(run_id, cfg)
    return {"outputs": outputs, "ran": ran, "cached": cached}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument("--set-file", help="YAML file of dotted keys → values (tuned values)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="override key=value"
    )
    args = parser.parse_args()
    pipeline(args.params, args.overrides, args.set_file)
