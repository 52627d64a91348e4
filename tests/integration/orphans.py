# SPDX-License-Identifier: ISC
"""Orphans of the processes a test starts: PID 1 on this machine reaps
none, so the test adopts and reaps them itself. A module of its own, not
conftest.py, because bench/ imports it beside tests/systemd/conftest.py
(through private_postfix.py), and two modules named conftest cannot both
be imported."""

import contextlib
import os
import signal
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def adopting_orphans():
    """While in it, the test process is the subreaper of its descendants
    (prctl(2)): one whose parent ends (the sessions of a killed
    activator, Postfix's daemons when its master exits) becomes a child
    of the test, for reap(), instead of PID 1's, which on this machine
    reaps no orphans."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def subreaper(on):
        if libc.prctl(PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    subreaper(1)
    try:
        yield
    finally:
        subreaper(0)


def adopted(comm):
    """The test process's children named comm (as /proc shows it, 15
    characters at most), running or exited."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split(" (", 1)[1].rsplit(") ", 1)
        except (OSError, ValueError):
            continue
        if name == comm and int(rest.split()[1]) == os.getpid():
            pids.append(int(stat.parent.name))
    return pids


def reap(pids, timeout=10.0):
    """Waits for the test's children pids to end, SIGKILLs those still
    running at the deadline, and reaps them all."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    left.discard(pid)
            except ChildProcessError:
                left.discard(pid)
        time.sleep(0.02)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
