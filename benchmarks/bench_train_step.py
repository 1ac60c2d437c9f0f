"""Optimiser steps per second: the UNet's weights in NCHW against NHWC (channels_last).

    python benchmarks/bench_train_step.py [--params params.yaml] [--steps 20]

Times `--steps` steps (after 3 warm-up steps) of pretraining (the EDM loss) and of
consistency training (`ct`: student and target) at the default network and batch size, on
random maps, once with PyTorch's default memory format and once after `training.channels_last`,
as `fit` does. Writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from halocm.config import load_config
from halocm.io import write_json
from halocm.models import DataShapes, build_network, network_spec
from halocm.stages.recipes import consistency_objective, edm_objective
from halocm.training import channels_last

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
WARMUP = 3


def objectives(cfg, shapes: DataShapes) -> dict:
    d = cfg.diffusion

    def network(kind: str):
        model = cfg.model.model_dump()
        return build_network(
            network_spec(kind, model, shapes, sigma_min=d.sigma_min, sigma_data=d.sigma_data)
        )

    denoiser = network("denoiser")
    student = network("consistency")
    student.load_state_dict(denoiser.state_dict())
    pretrain = edm_objective(cfg, denoiser)
    ct = consistency_objective(cfg, "ct", student=student, teacher=None)
    return {"pretrain": (denoiser, pretrain), "ct": (student, ct)}


def seconds_per_step(net, objective, batch, steps: int) -> float:
    opt = torch.optim.RAdam(net.parameters(), lr=1e-4)

    def step() -> None:
        loss = objective(*batch, 0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        objective.after_step(0)

    for _ in range(WARMUP):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    cfg = load_config(args.params)
    torch.manual_seed(cfg.seed)
    b, n = cfg.train.batch_size, cfg.simulator.resolution
    batch = (torch.randn(b, 3, n, n), torch.randn(b, 1, n, n), torch.randn(b, 4))
    shapes = DataShapes.from_arrays(*batch)
    rows = {}
    for name, (net, objective) in objectives(cfg, shapes).items():
        # One deepcopy of the pair keeps the objective's student the network being optimised.
        before = seconds_per_step(*copy.deepcopy((net, objective)), batch, args.steps)
        channels_last(net, *objective.networks.values())
        after = seconds_per_step(net, objective, batch, args.steps)
        rows[name] = {
            "nchw_s_per_step": round(before, 4),
            "channels_last_s_per_step": round(after, 4),
            "speedup": round(before / after, 3),
        }
        print(f"{name}: {before:.3f} s/step NCHW, {after:.3f} s/step channels_last")
    write_json(
        RESULTS,
        {
            "benchmark": "train_step",
            "batch": b,
            "resolution": n,
            "torch_threads": torch.get_num_threads(),
            "steps": args.steps,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
