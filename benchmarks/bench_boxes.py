"""Painting several boxes with several model sets: one box is too noisy a verdict.

    python benchmarks/bench_boxes.py --models-dir models [DIR ...] [--labels A ...]
                                     [--n-halos 100 400] [--seeds 4] [--steps 1]
                                     [--params params.yaml] [--out PATH]

For each host count and box seed, one box of `bench_paint.py`'s kind (512² pixels of the
simulator's pixel side, `halocm.data.box`) is painted by each model set's consistency model at
--steps (one realisation, the painting noise seed 0), and by the background alone (the DMO map
times the cosmic fractions). Per box, and averaged over the seeds: pk_err of every channel and
of the total, and the total's largest |P ratio − 1| for k ≤ k_Nyq/2 (`bench_paint.spectra`).
Writes benchmarks/results/boxes.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from bench_paint import paint_background, spectra

from halocm.api import load_model
from halocm.config import load_config
from halocm.data.box import simulate_box
from halocm.io import write_json
from halocm.painting import as_catalog, as_dmo, paint_with_generator

RESULTS = Path(__file__).resolve().parent / "results" / "boxes.json"
CHANNELS = ("dm_hydro", "gas", "stars", "total")
KEYS = (*CHANNELS, "total_max")


def scores(maps: np.ndarray, box) -> dict[str, float]:
    sp = spectra(maps, box.hydro, box.box_size, box.channel_names)
    out = {c: sp[c]["pk_err"] for c in CHANNELS}
    out["total_max"] = sp["total"]["pk_max_err"]
    return out


def paint_one(box, generators: dict, args, mass_min: float, batch_size: int) -> dict:
    """Scores of the background and of every model set on one box."""
    any_gen = next(iter(generators.values()))
    names = tuple(any_gen.stats.param_names) if any_gen.shapes.n_params else ()
    dmo = as_dmo(box.dmo)
    catalog = as_catalog(box.catalog, box_size=box.box_size, param_names=names)
    out = {"background only": scores(paint_background(box, (dmo, catalog), any_gen).maps, box)}
    for label, gen in generators.items():
        res = paint_with_generator(
            gen,
            dmo,
            catalog,
            box_size=box.box_size,
            n_steps=args.steps,
            n_realizations=1,
            mass_min=mass_min,
            batch_size=batch_size,
            seed=0,
        )
        out[label] = scores(res.maps, box)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--models-dir", type=Path, nargs="+", default=[Path("models")])
    parser.add_argument("--labels", nargs="+", help="one per --models-dir (default: the paths)")
    parser.add_argument("--n-halos", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    labels = args.labels or [str(d) for d in args.models_dir]
    if len(labels) != len(args.models_dir):
        parser.error(f"{len(labels)} labels for {len(args.models_dir)} model directories")

    cfg = load_config(args.params)
    generators = {
        label: load_model(d / "consistency.pt", device=args.device, sample=cfg.sample)
        for label, d in zip(labels, args.models_dir, strict=True)
    }
    boxes, means = [], {}
    for n_halos in args.n_halos:
        per_box = []
        for seed in range(args.seeds):
            box = simulate_box(cfg.simulator, n_pixels=512, n_halos=n_halos, seed=seed)
            row = paint_one(box, generators, args, cfg.paint.mass_min, cfg.paint.batch_size)
            boxes.append({"n_halos": n_halos, "seed": seed, "scores": row})
            per_box.append(row)
            print(n_halos, seed, {k: {c: round(v[c], 3) for c in v} for k, v in row.items()})
        means[str(n_halos)] = {
            label: {c: round(float(np.mean([r[label][c] for r in per_box])), 4) for c in KEYS}
            for label in per_box[0]
        }
    result = {
        "benchmark": "boxes",
        "models": dict(zip(labels, map(str, args.models_dir), strict=True)),
        "steps": args.steps,
        "n_pixels": 512,
        "mass_min": cfg.paint.mass_min,
        "device": str(next(iter(generators.values())).device),
        "torch_threads": torch.get_num_threads(),
        "mean_over_seeds": means,
        "boxes": boxes,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
