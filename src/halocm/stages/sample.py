"""`halocm sample`: hydro maps for the DMO maps of a file, with a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from halocm.api import load_model
from halocm.config import Config
from halocm.io import save_npz


class InputError(ValueError):
    """A condition file that cannot be read."""


def sample(
    cfg: Config,
    *,
    model: Path,
    condition: Path,
    out: Path,
    steps: int,
    realizations: int,
    seed: int,
    device: str,
) -> str:
    """Sample `realizations` maps per condition with the `sample` settings → OUT.npz
    (samples: N, R, C, H, W); returns a one-line summary."""
    gen = load_model(model, device=device, sample=cfg.sample)
    inputs = read_condition(condition)
    maps = gen.sample(
        inputs["condition"],
        inputs.get("params"),
        n_steps=steps,
        n_realizations=realizations,
        seed=seed,
    )
    save_npz(out, samples=maps, channel_names=np.array(gen.channel_names))
    return f"wrote {out}: samples {maps.shape}, {gen.nfe(steps)} NFE per map"


def read_condition(path: Path) -> dict[str, np.ndarray]:
    """`condition` (and `params`, when present) of an .npz file."""
    if not path.is_file():
        raise InputError(f"{path}: condition file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "condition" not in z:
                raise InputError(f"{path}: missing key 'condition' (N, Cc, H, W)")
            return {k: z[k] for k in z.files if k in ("condition", "params")}
    except (OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: not a readable .npz ({err})") from None
