"""`halocm evaluate`: the benchmark (docs/design.md §6) → metrics/ and reports/."""

from __future__ import annotations

from pathlib import Path

from halocm.api import load_model
from halocm.config import Config
from halocm.evaluation.benchmark import (
    benchmark,
    headline,
    load_test_set,
    mean_channel_fractions,
)
from halocm.evaluation.report import write_plots, write_report
from halocm.io import write_json
from halocm.stages.common import consistency_path, denoiser_path, split_path


def evaluate(cfg: Config) -> Path:
    """Score the consistency model (and the teacher, when there is one) with the current
    `sample` settings; write metrics/benchmark.json, headline.json, reports/ and plots."""
    ev = cfg.evaluate
    student = load_model(consistency_path(cfg), device=cfg.device, sample=cfg.sample)
    test = load_test_set(split_path(cfg, "test"), student.stats, ev.n_maps)
    teacher_file = denoiser_path(cfg)
    teacher = (
        load_model(teacher_file, device=cfg.device, sample=cfg.sample)
        if teacher_file.is_file()
        else None
    )
    result, examples = benchmark(
        student,
        teacher,
        test,
        mean_channel_fractions(split_path(cfg, "train"), student.stats),
        sampling_steps=ev.sampling_steps,
        teacher_levels=ev.teacher_levels,
        n_realizations=ev.n_realizations,
        teacher_realizations=ev.teacher_realizations,
        seed=cfg.seed,
    )
    metrics_dir, reports_dir = Path(cfg.paths.metrics_dir), Path(cfg.paths.reports_dir)
    out = write_json(metrics_dir / "benchmark.json", result)
    write_json(metrics_dir / "headline.json", headline(result))
    write_report(reports_dir / "benchmark.md", result)
    write_plots(result, test, examples, reports_dir=reports_dir, metrics_dir=metrics_dir)
    return out


def run(cfg: Config, log) -> None:
    log.benchmark(evaluate(cfg), Path(cfg.paths.reports_dir))
