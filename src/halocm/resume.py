"""`--resume`: continue a run from its last checkpoint, with what the user changed since.

Settings that a run can change midway — the learning rate, the number of steps, the
checkpoint and validation cadence of its loop section — are applied, and said so on stderr
(the NaN guard's advice "lower the learning rate and resume" works). Any other difference
(the network, the method's knobs, the optimiser, the seed, the prepared data) would make the
continued run neither the old one nor a new one: it is refused with one line listing what
differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from halocm.checkpoint import RESUME_KEYS, load_checkpoint, set_rng_state
from halocm.errors import BadInput

SAFE_KNOBS = ("lr", "steps", "checkpoint_every", "val_every")
# The loop section of each non-method run; a consistency method's run (mode ct, cd, ...) is
# the `train` loop plus the method's own section.
LOOP_SECTIONS = {"edm": "pretrain", "mse": "mean"}
SHARED_SECTIONS = ("seed", "model", "diffusion", "optimizer")
# Recorded with the checkpoint besides the config: the data and what was built from it.
RECORDED = ("kind", "mode", "norm_stats", "shapes", "residual")


class ResumeRefused(BadInput):
    """The run changed in a way a resumed run cannot follow."""


def run_sections(mode: str) -> tuple[str, tuple[str, ...]]:
    """(the loop section, every config section the run of `mode` reads)."""
    loop = LOOP_SECTIONS.get(mode, "train")
    method = () if mode in LOOP_SECTIONS else (mode,)
    return loop, (*SHARED_SECTIONS, loop, *method)


def changes(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """(safe changes, other changes) from the checkpoint `saved` to the run's `current`
    checkpoint metadata, each as `key old → new`. Nothing to compare without a config."""
    if "config" not in saved or "config" not in current:
        return [], []
    loop, sections = run_sections(current.get("mode", ""))
    found: list[tuple[str, object, object]] = []
    for section in sections:
        found += _diff(saved["config"].get(section), current["config"].get(section), section)
    for key in RECORDED:
        if key in saved or key in current:
            found += _diff(saved.get(key), current.get(key), key)
    safe = {f"{loop}.{knob}" for knob in SAFE_KNOBS}
    lines = [(key, f"{key} {_short(old)} → {_short(new)}") for key, old, new in found]
    return [t for k, t in lines if k in safe], [t for k, t in lines if k not in safe]


def restore(
    path: Path, *, net, ema, objective, optimizer, extra: dict, steps: int, lr: float
) -> int:
    """Load the training state at `path` into the run; returns the step to continue from.
    Safe changes are applied (the learning rate into the optimiser), others refused."""
    ckpt = load_checkpoint(path, need=RESUME_KEYS)
    applied, refused = changes(ckpt, extra)
    loop = run_sections(extra.get("mode", ""))[0]
    if refused:
        raise ResumeRefused(
            f"cannot resume {path}: changed since its checkpoint: {'; '.join(refused)} "
            f"(only {', '.join(f'{loop}.{k}' for k in SAFE_KNOBS)} may change on resume); "
            "run without --resume to start afresh"
        )
    if ckpt["step"] > steps:
        raise ResumeRefused(
            f"cannot resume {path}: it is at step {ckpt['step']}, beyond {loop}.steps={steps}"
        )
    net.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    for name, state in ckpt["networks"].items():
        objective.networks[name].load_state_dict(state)
    optimizer.load_state_dict(ckpt["optimizer"])
    for group in optimizer.param_groups:  # the optimiser state carries the old rate
        group["lr"] = lr
    set_rng_state(ckpt["rng"])
    if applied:
        print(f"resuming {path} at step {ckpt['step']}: {'; '.join(applied)}", file=sys.stderr)
    return ckpt["step"]


def _diff(old, new, key: str) -> list[tuple[str, object, object]]:
    """The differing leaves of two plain containers, as (dotted key, old, new)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for name in [*old, *(n for n in new if n not in old)]:
            out += _diff(old.get(name), new.get(name), f"{key}.{name}")
        return out
    if isinstance(old, torch.Tensor) or isinstance(new, torch.Tensor):
        same = (
            isinstance(old, torch.Tensor)
            and isinstance(new, torch.Tensor)
            and old.shape == new.shape
            and torch.equal(old.cpu(), new.cpu())
        )
        return [] if same else [(key, "tensor", "another tensor")]
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        old, new = list(old), list(new)
    return [] if old == new else [(key, old, new)]


def _short(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
