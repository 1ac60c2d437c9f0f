"""The two kinds of expected failure, and the one line (and exit code) each becomes.

Bad input (exit 2): a value, file or path that the user gave is wrong; fixing the input fixes
it. An environment fault (exit 1): the machine or a service refuses — a full disk, a
read-only folder, a lock another run holds, a database that cannot be reached, a driver that
is not installed; the same command works once that is fixed. Anything else is a bug and keeps
its traceback (docs/design.md §2).
"""

from __future__ import annotations

import errno

BAD_INPUT = 2
ENVIRONMENT = 1

# OS errors that say the path given is wrong, rather than that the machine refuses.
_PATH_ERRNOS = {
    errno.ENOENT,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EEXIST,
}


class EnvironmentFault(RuntimeError):
    """The machine or a service refused; the message is one line saying what and where."""


class BadInput(ValueError):
    """Input that cannot be used; the message is one line saying what and where."""


def os_error_line(err: OSError) -> str:
    """`PATH: reason`, e.g. `models/consistency.pt: No space left on device`."""
    reason = err.strerror or str(err)
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    return f"{' → '.join(names)}: {reason}" if names else reason


def classify(err: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) of an expected failure; None for a bug. Bad input is a
    ValueError (ConfigError, DataError, BadInput, ...)."""
    if isinstance(err, EnvironmentFault | MemoryError):
        return ENVIRONMENT, _first_line(err)
    if isinstance(err, OSError):
        code = BAD_INPUT if err.errno in _PATH_ERRNOS else ENVIRONMENT
        return code, os_error_line(err)
    if isinstance(err, EOFError):  # a truncated or empty file (numpy raises it)
        return BAD_INPUT, f"unexpected end of file ({_first_line(err)})"
    if isinstance(err, ValueError):
        return BAD_INPUT, _first_line(err)
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
