"""`halocm sample`: hydro maps for the DMO maps of a file, with a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from halocm.api import load_model
from halocm.config import Config
from halocm.io import save_npz
from halocm.temporaries import remove_stale_files


class InputError(ValueError):
    """Input that cannot be sampled: an unusable condition file, or a model whose maps are
    not finite."""


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
    (samples: N, R, C, H, W); returns a one-line summary. Non-finite samples are refused
    and OUT keeps what it held."""
    gen = load_model(model, device=device, sample=cfg.sample)
    inputs = read_condition(condition)
    maps = gen.sample(
        inputs["condition"],
        inputs.get("params"),
        n_steps=steps,
        n_realizations=realizations,
        seed=seed,
    )
    check_finite_output(maps, f"{model}: sampled maps")
    remove_stale_files(Path(out).parent)
    save_npz(out, samples=maps, channel_names=np.array(gen.channel_names))
    return f"wrote {out}: samples {maps.shape}, {gen.nfe(steps)} NFE per map"


def check_finite_output(maps: np.ndarray, what: str) -> None:
    """Refuse to write NaN/inf maps (e.g. from a checkpoint whose training diverged)."""
    bad = ~np.isfinite(maps)
    if bad.any():
        index = np.argwhere(bad)[0].tolist()
        raise InputError(f"{what} hold NaN/inf (first at index {index}); nothing written")


def read_condition(path: Path) -> dict[str, np.ndarray]:
    """`condition` (N ≥ 1 real maps) and, when present, `params` of an .npz file."""
    if not path.is_file():
        raise InputError(f"{path}: condition file not found")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else "empty or truncated"
        raise InputError(f"{path}: not a readable .npz ({reason})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy under an .npz name
        raise InputError(f"{path}: not a readable .npz (a single array, not an archive)")
    with z:
        if "condition" not in z.files:
            raise InputError(f"{path}: missing key 'condition' (N, Cc, H, W)")
        try:
            arrays = {k: z[k] for k in z.files if k in ("condition", "params")}
        except ValueError:  # object arrays need pickle, which is never allowed
            raise InputError(f"{path}: holds Python objects (pickle); store numbers") from None
    for key, a in arrays.items():
        if a.dtype.kind not in "iuf":
            raise InputError(f"{path}: key {key!r}: expected real numbers, got dtype {a.dtype}")
    if len(arrays["condition"]) == 0:
        raise InputError(f"{path}: key 'condition': no maps (N = 0)")
    return arrays
