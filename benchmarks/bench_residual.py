"""Where the error is: the residual around the conditional mean, split into what the two truth
realisations share and what they do not.

    python benchmarks/bench_residual.py [--model models/consistency.pt] [--teacher
        models/denoiser.pt] [--maps 200]

The test split holds two draws of the simulator's randomness per condition, y1 and y2. Around
the model's mean network μ, in residual units r = (y − μ)/s (docs/design.md §5):
- (r1 − r2)/√2 is the random part: it has the truth's conditional spread, and nothing of μ's
  error;
- (r1 + r2)/2 is what both draws share: μ's error, plus half the random variance.
Per channel this writes the standard deviation of the random part for the truth and for the
model's samples at 1 and 2 steps (two samples per map; under 1 the samples are
under-dispersed), and the pk_err of μ alone, of μ plus the random part and of μ plus the
shared part. When μ plus the shared part scores near 0 and μ plus the random part scores like
μ, the channel's pk_err is μ's error, not the generator's spread. Per wavenumber ring it
writes the power of the samples' random part over the truth's (`random_power_ratio`, rings 1
to N/2, i.e. k_F to k_Nyq), for the consistency model at 1 and 2 steps and, with a teacher,
its EDM Heun sampler: a scale can be right on average and wrong by 10× at pixel scales.
Writes benchmarks/results/residual.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from halocm.api import load_model
from halocm.data.dataset import load_split
from halocm.data.normalize import NormStats, denormalize_target, normalize_target
from halocm.evaluation.metrics import pk_error, power_spectrum
from halocm.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "residual.json"
TEACHER_LEVELS = 18  # 35 NFE, as `halocm evaluate` runs it


def residual_units(residual, stats: NormStats, maps: np.ndarray, mu) -> torch.Tensor:
    y = torch.as_tensor(normalize_target(maps.astype(np.float64), stats), dtype=torch.float32)
    return residual.encode(y, mu)


def random_std(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Per-channel std of (a − b)/√2: the spread of one draw around what a and b share."""
    return [round(float(v), 4) for v in ((a - b) / 2**0.5).std(dim=(0, 2, 3))]


def random_power(a: torch.Tensor, b: torch.Tensor, box_size: float) -> np.ndarray:
    """Per-channel ring power of (a − b)/√2 averaged over maps (C, N/2)."""
    _, p = power_spectrum(((a - b) / 2**0.5).numpy().astype(np.float64), box_size)
    return p.mean(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "consistency.pt")
    parser.add_argument("--teacher", type=Path, default=None, help="a denoiser.pt to score too")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "processed")
    parser.add_argument("--maps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gen = load_model(args.model, device="cpu")
    if gen.residual.mean is None:
        raise SystemExit(f"{args.model}: has no mean network (mean.enabled was false)")
    split = load_split(args.data / "test.npz")
    stats = NormStats.load(args.data / "norm_stats.json")
    n = min(args.maps, len(split["condition"]))
    cond = torch.as_tensor(split["condition"][:n])
    params = torch.as_tensor(split["params"][:n])
    truth = split["truth_realizations"][:n]
    mu = gen.residual.predict(cond, params)
    r1, r2 = (residual_units(gen.residual, stats, truth[:, i], mu) for i in (0, 1))

    def physical(r: torch.Tensor) -> np.ndarray:
        return denormalize_target(gen.residual.decode(r, mu).numpy().astype(np.float64), stats)

    box = stats.box_size
    variants = {
        "mean_alone": physical(torch.zeros_like(r1)),
        "mean_plus_random_part": physical((r1 - r2) / 2**0.5),
        "mean_plus_shared_part": physical((r1 + r2) / 2),
    }
    channels = {}
    for c, name in enumerate(gen.channel_names):
        channels[name] = {
            f"pk_err_{label}": round(pk_error(maps[:, c], truth[:, 0, c], box), 4)
            for label, maps in variants.items()
        }
        channels[name]["pk_err_oracle"] = round(pk_error(truth[:, 1, c], truth[:, 0, c], box), 4)
    spread = {"truth": random_std(r1, r2)}
    truth_power = random_power(r1, r2, box)
    power = {}
    samplers = [(f"consistency_{steps}", gen, steps) for steps in (1, 2)]
    if args.teacher is not None:
        samplers.append(("teacher", load_model(args.teacher, device="cpu"), TEACHER_LEVELS))
    for label, model, steps in samplers:
        draws = model.draw(cond, params, n_steps=steps, n_realizations=2, seed=args.seed)
        a, b = (residual_units(gen.residual, stats, draws[:, i], mu) for i in (0, 1))
        spread[label] = random_std(a, b)
        power[label] = random_power(a, b, box) / truth_power
    for c, name in enumerate(gen.channel_names):
        channels[name]["random_std"] = {k: v[c] for k, v in spread.items()}
        channels[name]["random_power_ratio"] = {
            k: [round(float(v), 3) for v in ratio[c]] for k, ratio in power.items()
        }
        print(name, channels[name])
    write_json(
        RESULTS,
        {
            "benchmark": "residual",
            "model": str(args.model),
            "teacher": None if args.teacher is None else str(args.teacher),
            "maps": n,
            **channels,
        },
    )


if __name__ == "__main__":
    main()
