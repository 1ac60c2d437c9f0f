"""One writer per output directory: a run takes the directory's lock before it writes.

The lock is an exclusive `flock` on `DIR/.halocm.lock`, so it dies with its process (kill -9
included): there is never a stale lock to remove by hand. The holder writes who it is into
the file, and a second writer is refused with one line naming it. Under torchrun only rank 0
writes outputs (halocm.distributed), so only rank 0 locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from halocm.errors import EnvironmentFault
from halocm.processes import ProcessId
from halocm.temporaries import remove_stale_files

LOCK_NAME = ".halocm.lock"


class DirectoryBusy(EnvironmentFault):
    """Another process holds the directory's lock."""


@contextlib.contextmanager
def output_lock(directories: Iterable[str | Path], command: str) -> Iterator[None]:
    """Hold the lock of every directory in `directories` while the block runs; then remove
    the temporaries that killed writers left there."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with contextlib.ExitStack() as stack:
        for directory in sorted({Path(d) for d in directories}):
            stack.enter_context(_hold(directory, command))
            remove_stale_files(directory, recursive=True)  # e.g. models/checkpoints
        yield


@contextlib.contextmanager
def _hold(directory: Path, command: str) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    # Opened without truncating: the holder's record must survive a refused open.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryBusy(f"{directory}: {_holder(path)}; wait for it or stop it") from None
        record = {
            **ProcessId.current().record(),
            "command": command,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def _holder(path: Path) -> str:
    """`in use by halocm train (pid 123 on host, since ...)`, from the holder's record."""
    try:
        record = json.loads(path.read_text())
        return (
            f"in use by `{record['command']}` (pid {record['pid']} on {record['host']}, "
            f"since {record['since']})"
        )
    except (OSError, ValueError, KeyError):  # the holder has not written its record yet
        return "in use by another halocm process"
