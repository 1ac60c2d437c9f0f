"""Child processes that stop with their parent (`halocm ui` runs `mlflow ui`).

The child runs in its own process group, so that stopping it stops what it started too
(the MLflow server's workers). SIGTERM, SIGINT and SIGHUP to halocm stop the whole group,
wait for it, then exit: nothing is left listening on the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_child(cmd: list[str], grace_seconds: float = 10.0) -> int:
    """Run `cmd` until it exits and return its exit code. A stop signal to this process
    stops the child's whole process group (SIGTERM, SIGKILL after `grace_seconds`), then
    exits with 128 + the signal."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    stops: list[tuple[int, float]] = []  # (signal, when to give up waiting)

    def stop(signum, _frame) -> None:
        # No waiting here: the handler interrupts the wait below, which holds Popen's lock.
        stops.append((signum, time.monotonic() + grace_seconds))
        _signal_group(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stops and time.monotonic() > stops[0][1]:
                    _signal_group(proc.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stops:
        raise SystemExit(128 + stops[0][0])
    return code


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
