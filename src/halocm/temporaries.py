"""Where halocm's temporary files and folders go, how they are named, and their removal.

A file is written as `.NAME.halocm-HOST-PID-XXXX.tmp` beside its destination, then renamed
onto it (halocm.io); a tuning trial trains in `$TMPDIR/halocm-trial-HOST-PID-XXXX`. A process
killed meanwhile (kill -9, a full disk, a power cut) leaves them behind; the name says which
process made them, so a later run removes those of processes that are gone and never touches
one that a live process is still writing.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from halocm.processes import ProcessId

TRIAL_PREFIX = "halocm-trial-"
# What follows the marker: HOST-PID-RANDOM (tempfile's random part has no '-' or '.').
_OWNER = r"(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-[a-z0-9_]+"
_FILE = re.compile(rf"^\..+\.halocm-{_OWNER}\.tmp$")
_TRIAL = re.compile(rf"^{TRIAL_PREFIX}{_OWNER}$")


def temp_file(destination: Path) -> Path:
    """A new empty temporary file beside `destination`, named after it and this process."""
    fd, tmp = tempfile.mkstemp(
        dir=destination.parent,
        prefix=f".{destination.name}.halocm-{ProcessId.current().tag()}-",
        suffix=".tmp",
    )
    os.close(fd)
    return Path(tmp)


def trial_dir() -> Path:
    """A new folder in the system temporary directory for one tuning trial."""
    return Path(tempfile.mkdtemp(prefix=f"{TRIAL_PREFIX}{ProcessId.current().tag()}-"))


def _gone(match: re.Match | None) -> bool:
    return match is not None and ProcessId(match["host"], int(match["pid"])).gone()


def remove_stale_files(directory: Path, *, recursive: bool = False) -> list[Path]:
    """Remove the temporaries in `directory` (and its subfolders, if `recursive`) whose
    process is gone."""
    if not directory.is_dir():
        return []
    found = directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp")
    stale = [p for p in found if _gone(_FILE.match(p.name))]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def remove_stale_trial_dirs(parent: Path | None = None) -> list[Path]:
    """Remove the tuning trials' folders (in the system temporary directory) whose worker is
    gone."""
    parent = Path(parent or tempfile.gettempdir())
    stale = [p for p in parent.glob(f"{TRIAL_PREFIX}*") if _gone(_TRIAL.match(p.name))]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
