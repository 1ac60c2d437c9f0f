"""Checkpoints: tensors and plain containers only, loadable with `weights_only=True`.

A checkpoint alone is enough to sample: it carries the weights, the inference EMA, the network
spec (kind, UNet keywords, preconditioning constants), the diffusion constants, the
normalisation statistics, the data shapes and, for the record, the resolved config
(docs/design.md §4).

Loading checks the structure before anything uses it, so a wrong file fails with one line
naming the file, the key, and what was expected against what was found — not with a KeyError
or "Error(s) in loading state_dict" from deep inside.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from halocm.io import atomic_path

# What sampling (and warm starts) read, and what `--resume` reads besides.
SAMPLING_KEYS = ("kind", "mode", "network", "diffusion", "config", "norm_stats", "shapes", "ema")
RESUME_KEYS = ("model", "ema", "networks", "optimizer", "step", "rng")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: one line with the file, the key, expected vs found."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write atomically: a killed run never leaves a half-written checkpoint behind.

    Serialised in memory first, then written with Python's file I/O: torch's own writer turns
    a full disk into an opaque "enforce fail" RuntimeError, Python's into an OSError (ENOSPC).
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    need: tuple[str, ...] = (),
    kind: str | None = None,
) -> dict:
    """Read a checkpoint and check its structure: the keys in `need` must be present, every
    known key that is present must be well formed, the weights must fit the network spec and
    be finite, and `kind`, when given, must match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "checkpoint not found", str(path))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt, truncated or unsafe files
        raise CheckpointError(f"{path}: not a halocm checkpoint ({type(err).__name__})") from None
    check_checkpoint(ckpt, path, need=need, kind=kind)
    return ckpt


def check_checkpoint(ckpt, path: Path, *, need: tuple[str, ...] = (), kind: str | None = None):
    """Raise CheckpointError at the first structural problem of `ckpt` (see load_checkpoint)."""
    where = f"{path}: "
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{where}expected a mapping of keys, found a {type(ckpt).__name__}")
    missing = [k for k in need if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{where}key {missing[0]!r} missing (a halocm checkpoint has {', '.join(need)})"
        )
    _check_types(ckpt, where)
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(f"{where}key 'kind': expected {kind!r}, found {ckpt.get('kind')!r}")
    if "network" in ckpt:
        _check_network(ckpt, where)


_TYPES = {
    "kind": str,
    "mode": str,
    "network": dict,
    "diffusion": dict,
    "config": dict,
    "norm_stats": dict,
    "shapes": dict,
    "model": dict,
    "ema": dict,
    "networks": dict,
    "optimizer": dict,
    "step": int,
    "total_steps": int,
    "rng": dict,
}


def _check_types(ckpt: dict, where: str) -> None:
    for key, expected in _TYPES.items():
        if key in ckpt and not isinstance(ckpt[key], expected):
            found = type(ckpt[key]).__name__
            raise CheckpointError(
                f"{where}key {key!r}: expected {expected.__name__}, found {found}"
            )
    if ckpt.get("step", 0) < 0:
        raise CheckpointError(f"{where}key 'step': expected ≥ 0, found {ckpt['step']}")
    for name, value in ckpt.get("diffusion", {}).items():
        if not (isinstance(value, int | float) and math.isfinite(value)):
            raise CheckpointError(
                f"{where}key 'diffusion.{name}': expected a finite number, found {value!r}"
            )
    for name, value in ckpt.get("shapes", {}).items():
        if not (isinstance(value, int) and value >= 0):
            raise CheckpointError(f"{where}key 'shapes.{name}': expected a count, found {value!r}")


def _check_network(ckpt: dict, where: str) -> None:
    """The spec builds a network (on the meta device: no memory), its kind is the
    checkpoint's, the shapes agree with its UNet, and each set of weights fits it."""
    from halocm.models import FILLED_WHEN_ABSENT, PRECONDS, build_network

    spec = ckpt["network"]
    if spec.get("kind") not in PRECONDS:
        raise CheckpointError(
            f"{where}key 'network.kind': expected one of {', '.join(PRECONDS)}, "
            f"found {spec.get('kind')!r}"
        )
    if "kind" in ckpt and ckpt["kind"] != spec["kind"]:
        raise CheckpointError(
            f"{where}key 'kind': {ckpt['kind']!r} differs from 'network.kind' {spec['kind']!r}"
        )
    unet = spec.get("unet")
    if not isinstance(unet, dict) or not isinstance(spec.get("precond"), dict):
        raise CheckpointError(f"{where}key 'network': expected 'unet' and 'precond' mappings")
    for name, value in _network_shapes(ckpt).items():
        if name in unet and unet[name] != value:
            raise CheckpointError(
                f"{where}key 'shapes.{name}': {value} differs from the network's {unet[name]}"
            )
    try:
        with torch.device("meta"):
            expected = build_network(spec).state_dict()
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{where}key 'network': does not build a network ({err})") from None
    for key in ("ema", "model"):
        if key in ckpt:
            _check_weights(ckpt[key], expected, f"{where}key {key!r}: ", FILLED_WHEN_ABSENT)


def _network_shapes(ckpt: dict) -> dict:
    """The data's shapes as the checkpoint's network sees them: generators that see μ take
    its channels beside the condition (halocm.residual)."""
    shapes = dict(ckpt.get("shapes", {}))
    residual = ckpt.get("residual")
    if isinstance(residual, dict) and residual.get("conditions") and "cond_channels" in shapes:
        shapes["cond_channels"] += shapes.get("target_channels", 0)
    return shapes


def _check_weights(state: dict, expected: dict, where: str, optional=frozenset()) -> None:
    """Every expected tensor in its shape, none unknown; those in `optional` may be absent
    (the network fills them in when it loads an older checkpoint)."""
    missing = [name for name in expected if name not in state and name not in optional]
    if missing:
        raise CheckpointError(f"{where}tensor {missing[0]!r} missing ({len(missing)} in all)")
    extra = [name for name in state if name not in expected]
    if extra:
        raise CheckpointError(f"{where}tensor {extra[0]!r} is not in the network spec")
    for name, want in expected.items():
        if name not in state:
            continue
        found = state[name]
        if not isinstance(found, torch.Tensor) or found.shape != want.shape:
            shape = tuple(found.shape) if isinstance(found, torch.Tensor) else type(found).__name__
            raise CheckpointError(
                f"{where}tensor {name!r}: expected shape {tuple(want.shape)}, found {shape}"
            )
        if found.is_floating_point() and not torch.isfinite(found).all():
            raise CheckpointError(f"{where}tensor {name!r} holds NaN/inf weights")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
