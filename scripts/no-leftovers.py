#!/usr/bin/env python3
"""Runs a command and fails if any process it started outlives it.

The wrapper makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER):
every process the command starts, however deep and even if it daemonises or
its parent dies, is re-parented to this wrapper instead of init. When the
command ends, anything still parented here was left behind: stand-ins, the
app, WebKitWebDriver, tauri-driver, Xvfb, dbus-daemon. Those are named,
killed, and the exit status becomes 1 (unless the command had failed already).

Usage: no-leftovers.py COMMAND [ARGS...]
"""
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 3.0


def children_of(pid):
    """Pids whose parent is `pid`, with their command lines."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
            if ppid != pid or state == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            out.append((int(entry), cmd))
        except (OSError, IndexError, ValueError):
            continue
    return out


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("no-leftovers: cannot become a subreaper; the leftover check is off", file=sys.stderr)
        return subprocess.call(sys.argv[1:])
    # The command is a child like any other: forward Ctrl-C to it only.
    child = subprocess.Popen(sys.argv[1:])
    # Reap as we go: orphans re-parented here while the command runs must not
    # linger as zombies (a test waiting for a process group to be gone would
    # wait for ever).
    rc = None
    while rc is None:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            rc = child.poll() or 0
            break
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            continue
        if pid == child.pid:
            rc = os.waitstatus_to_exitcode(status)
            if rc < 0:
                rc = 128 - rc
    deadline = time.time() + GRACE_SECONDS
    left = []
    while True:
        reap()
        left = children_of(os.getpid())
        if not left or time.time() > deadline:
            break
        time.sleep(0.1)
    if not left:
        print("no-leftovers: every process the test command started has ended", file=sys.stderr)
        return rc
    print(f"no-leftovers: FAIL: {len(left)} process(es) started by the test command outlived it:", file=sys.stderr)
    for pid, cmd in left:
        print(f"  pid {pid}: {cmd[:200]}", file=sys.stderr)
    for pid, _ in left:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)
    reap()
    return rc if rc != 0 else 1


if __name__ == "__main__":
    sys.exit(main())
