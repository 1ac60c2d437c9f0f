"""Which process left something behind, and whether it still runs.

Temporary files, a run's lock and a tuning trial each record the process that made them
(host, pid and, on Linux, its start time). A later process removes what was left by one that
is gone (a killed writer's temporaries, a killed tuning worker's trial), and never what a
live process is still using.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import asdict, dataclass


def hostname() -> str:
    """This host's short name, reduced to letters, digits and '-' so it fits in file names."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "localhost"


@dataclass(frozen=True)
class ProcessId:
    host: str
    pid: int
    # Clock ticks after boot when the process started (Linux): a reused pid is not the same
    # process. None where it is unknown (then the pid alone decides).
    started: int | None = None

    @classmethod
    def current(cls) -> ProcessId:
        return cls(hostname(), os.getpid(), _start_ticks(os.getpid()))

    @classmethod
    def from_record(cls, record: dict) -> ProcessId:
        return cls(str(record["host"]), int(record["pid"]), record.get("started"))

    def record(self) -> dict:
        return asdict(self)

    def tag(self) -> str:
        """`host-pid`, the part of a temporary's name that says who made it."""
        return f"{self.host}-{self.pid}"

    def gone(self) -> bool:
        """True only when this process certainly no longer runs: it ran on this host and its
        pid is free, a zombie, or now another process. On another host nothing is certain."""
        if self.host != hostname():
            return False
        state = _proc_state(self.pid)
        if state is None:  # no /proc: ask the kernel whether the pid exists
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:  # exists, owned by another user
                return False
            return False
        if state == "missing" or state == "Z":  # a killed child its parent has not reaped
            return True
        started = _start_ticks(self.pid)
        return self.started is not None and started is not None and started != self.started


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return []
    except OSError:
        return None


def _proc_state(pid: int) -> str | None:
    """The process state letter, "missing" when there is no such process, None without /proc."""
    if not os.path.isdir("/proc/self"):
        return None
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return fields[0] if fields else "missing"


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid) if os.path.isdir("/proc/self") else None
    # starttime is field 22 of stat; fields here start at field 3 (state).
    return int(fields[19]) if fields else None
