"""Sampling throughput against its ceiling, memory, and training cost (issue 4).

    python benchmarks/bench_sampling.py [--params params.yaml] [--batch 256] [--repeats 5]

Needs models/consistency.pt and models/denoiser.pt (run the pipeline first). Measures, on the
configured device, maps per second for the consistency model at 1, 2 and 4 steps, the EDM
teacher (Heun, 2n − 1 evaluations), and the bare forward pass of the networks one step needs
(the generator and, with the residual parametrisation, the mean network: the ceiling of a
one-step sampler) and of the mean network alone; peak memory; and the wall time of 1,000
training steps of each objective, extrapolated from a short run. Writes
benchmarks/results/sampling.json.
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
from pathlib import Path

import numpy as np
import torch

from halocm.api import load_model
from halocm.config import load_config
from halocm.data.dataset import load_split
from halocm.io import write_json
from halocm.models import DataShapes, build_network, network_spec
from halocm.stages.common import consistency_path, denoiser_path
from halocm.stages.recipes import consistency_objective, edm_objective
from halocm.training import channels_last

RESULTS = Path(__file__).resolve().parent / "results" / "sampling.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats`, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sampling_rows(cfg, batch: int, repeats: int) -> tuple[list[dict], dict]:
    student = load_model(consistency_path(cfg), device=cfg.device, sample=cfg.sample)
    teacher = load_model(denoiser_path(cfg), device=cfg.device, sample=cfg.sample)
    test = load_split(cfg.paths.processed_dir / "test.npz")
    reps = -(-batch // len(test["condition"]))
    cond = torch.as_tensor(np.concatenate([test["condition"]] * reps)[:batch])
    params = torch.as_tensor(np.concatenate([test["params"]] * reps)[:batch])
    device = student.device
    rows = []
    for name, gen, steps in [
        ("consistency", student, 1),
        ("consistency", student, 2),
        ("consistency", student, 4),
        ("teacher", teacher, cfg.evaluate.teacher_levels),
    ]:
        seconds = timed(
            lambda g=gen, s=steps: g.sample_normalized(
                cond, params, n_steps=s, seed=0, indices=range(batch)
            ),
            device,
            repeats,
        )
        rows.append(
            {
                "sampler": name,
                "steps": steps,
                "nfe": gen.nfe(steps),
                "maps_per_s": batch / seconds,
                "ms_per_map": 1000 * seconds / batch,
            }
        )

    net, sigma = student.net, torch.full((batch,), cfg.diffusion.sigma_max, device=device)
    x = torch.randn(batch, student.shapes.target_channels, *cond.shape[-2:], device=device)
    c, p = cond.to(device), params.to(device)

    @torch.no_grad()
    def forward():  # what one step cannot avoid: the generator and, if any, the mean network
        net(x, sigma, c, p)
        student.residual.predict(c, p)

    @torch.no_grad()
    def mean_only():
        student.residual.predict(c, p)

    ceiling = batch / timed(forward, device, repeats)
    for row in rows:
        row["fraction_of_ceiling"] = row["maps_per_s"] * row["nfe"] / ceiling
    teacher_rate = rows[-1]["maps_per_s"]
    summary = {
        "forward_pass_maps_per_s": ceiling,
        "mean_network_maps_per_s": batch / timed(mean_only, device, repeats)
        if student.residual.mean is not None
        else None,
        "one_step_speedup_over_teacher": rows[0]["maps_per_s"] / teacher_rate,
        "one_step_fraction_of_ceiling": rows[0]["maps_per_s"] / ceiling,
        "n_parameters": student.n_parameters,
    }
    return rows, summary


def training_cost(cfg, steps: int) -> dict[str, float]:
    """Seconds per 1,000 optimiser steps for pretraining and each consistency mode."""
    test = load_split(cfg.paths.processed_dir / "train.npz")
    b = cfg.train.batch_size
    x0 = torch.as_tensor(test["target"][:b])
    cond = torch.as_tensor(test["condition"][:b])
    params = torch.as_tensor(test["params"][:b])
    shapes = DataShapes.from_arrays(x0, cond, params)
    d = cfg.diffusion
    out = {}

    def network(kind: str):
        spec = network_spec(
            kind, cfg.model.model_dump(), shapes, sigma_min=d.sigma_min, sigma_data=d.sigma_data
        )
        return build_network(spec)

    denoiser = network("denoiser")
    teacher = copy.deepcopy(denoiser).eval().requires_grad_(False)
    jobs = {"pretrain": (denoiser, edm_objective(cfg, denoiser))}
    for mode in ("ct", "ict", "cd", "ect"):
        student = network("consistency")
        jobs[mode] = (student, consistency_objective(cfg, mode, student=student, teacher=teacher))
    for name, (net, objective) in jobs.items():
        channels_last(net, *objective.networks.values())  # as training.fit does
        opt = torch.optim.RAdam(net.parameters(), lr=1e-4)

        def step(net=net, objective=objective, opt=opt):
            loss = objective(x0, cond, params, 0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            objective.after_step(0)

        out[name] = (
            1000 * timed(lambda s=step: [s() for _ in range(steps)], torch.device("cpu"), 1) / steps
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cfg = load_config(args.params)
    rows, summary = sampling_rows(cfg, args.batch, args.repeats)
    result = {
        "benchmark": "sampling",
        "batch": args.batch,
        "device": cfg.device,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        **summary,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_seconds_per_1000_steps": training_cost(cfg, args.train_steps),
        "train_batch_size": cfg.train.batch_size,
    }
    write_json(args.out, result)
    for row in rows:
        print(
            f"{row['sampler']:12s} {row['steps']:3d} steps {row['nfe']:3d} NFE "
            f"{row['maps_per_s']:9.1f} maps/s  {row['fraction_of_ceiling']:.2f} of ceiling"
        )
    print(
        f"forward pass {summary['forward_pass_maps_per_s']:.1f} maps/s; 1-step speed-up over "
        f"the teacher {summary['one_step_speedup_over_teacher']:.1f}x"
    )
    return result


if __name__ == "__main__":
    main()
