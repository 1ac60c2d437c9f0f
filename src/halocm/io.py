"""Atomic file writing: every output appears whole or not at all (temp file, then rename).

Outputs that belong together (a checkpoint and its config, a painted box and its halo table,
the prepared splits and their statistics) are published together: every file is written to
its temporary first, and only when all are complete are they renamed into place. A failure
(a full disk, a bad value found late) leaves the previous outputs as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from halocm.temporaries import temp_file


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield one temp path beside each of `paths`; rename them all onto `paths` only if the
    block succeeds (renames do not fail for lack of space, so they all happen)."""
    paths = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(temp_file(path))
        yield tmps
        mode = 0o666 & ~_umask()  # mkstemp makes 0600; outputs get the usual mode
        for tmp in tmps:
            os.chmod(tmp, mode)
        for tmp, path in zip(tmps, paths, strict=True):
            try:
                os.replace(tmp, path)
            except OSError as err:  # name the destination, not the temporary
                raise type(err)(err.errno, err.strerror, str(path)) from None
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_text(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def write_json(path: str | Path, obj) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj))
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_npz(path: str | Path, arrays: dict) -> None:
    """np.savez into an open handle (np adds no `.npz` suffix to a handle)."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def save_npz(path: str | Path, **arrays) -> Path:
    """np.savez to a temp file, then rename."""
    with atomic_path(path) as tmp:
        write_npz(tmp, arrays)
    return Path(path)
