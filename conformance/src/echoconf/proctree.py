"""The whole process tree of a server the harness starts, so that nothing it forks outlives it.

Where this process may create cgroups (cgroup v2, as root: a fresh Debian machine, a CI runner),
each server runs in a cgroup of its own, `echoconf-<harness pid>-<n>`, made beside the
harness's own: whatever the server forks stays in it, also a child that calls setsid() or
double-forks, and `cgroup.kill` ends it all at once. Elsewhere (a container with a read-only
cgroup file system, no root) the server leads a session of its own and the tree is that
session: only a descendant that calls setsid() itself can escape it, and `Tree.kind` says which
one a run used, for its report.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time
from pathlib import Path

STOP_TIMEOUT = 5.0  # how long killed processes may take to be gone
_seq = itertools.count()
_swept = False


def _cgroup2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
    hybrid host)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split()[4])
    except OSError:
        pass
    return None


def _own_cgroup(mount: Path) -> Path:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return mount / line[3:].strip().lstrip("/")
    except OSError:
        pass
    return mount


def parent() -> Path | None:
    """The cgroup servers' cgroups are made in (beside this process's own), None when there is
    none this process may write."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    own = _own_cgroup(mount)
    return own if os.access(own, os.W_OK) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def start_time(pid: int) -> str | None:
    """When process `pid` started (field 22 of /proc/PID/stat, clock ticks since boot), or None
    when it is gone or a zombie: a number reused by another process has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] in ("Z", "X") else fields[19]


def _live(pid: int) -> bool:
    """Whether `pid` runs: neither gone nor a zombie."""
    return start_time(pid) is not None


def _cmdline(pid: int) -> str | None:
    """A live process's command line; None when it is gone or a zombie."""
    if not _live(pid):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a for a in f.read().split(b"\0") if a]
    except (OSError, IndexError):
        return None
    return b" ".join(argv).decode(errors="replace")


def session_pids(sid: int) -> list[int]:
    """The live processes of session `sid`: what a process that leads a session of its own
    forked stays in it, unless it calls setsid() itself."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.append(int(entry))
    return out


def cgroup_pids(pid: int) -> list[int] | None:
    """The live processes of the cgroup that `pid` is in (a container's: none of them can leave
    it), from that cgroup's own list (v2, or v1's pids controller); None when it cannot be read.
    Two small reads, where a session scan reads every process of the host."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        where = Path("/sys/fs/cgroup/pids") if controllers == "pids" else _cgroup2_mount() if controllers == "" else None
        if where is None:
            continue
        try:
            text = (where / path.lstrip("/") / "cgroup.procs").read_text()
        except OSError:
            continue
        pids = [p for p in map(int, text.split()) if _live(p)]
        if pid in pids or not _live(pid):
            return pids
    return None


class Tree:
    """A server's processes: its own and all it forked. Made before the server starts
    (`prefix` goes in front of its command line), ended by `end`, removed by `close`."""

    kind = "session"

    def __init__(self) -> None:
        self.leader: int | None = None

    def prefix(self) -> list[str]:
        return []

    def started(self, pid: int) -> None:
        """The server process is `pid` (it leads a session of its own: start_new_session)."""
        self.leader = pid

    def pids(self) -> list[int]:
        """The live processes of the tree."""
        return [] if self.leader is None else session_pids(self.leader)

    def processes(self) -> dict[int, str]:
        """The live processes of the tree, by pid, with their command lines."""
        out = {}
        for pid in self.pids():
            cmd = _cmdline(pid)
            if cmd is not None:
                out[pid] = cmd
        return out

    def signal(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _kill_all(self) -> None:
        self.signal(signal.SIGKILL)

    def end(self, leader: subprocess.Popen[bytes] | None = None) -> list[str]:
        """SIGKILL every process of the tree and wait (bounded) until none is left; returns the
        command lines of those other than the leader that were still running."""
        others = {p: c for p, c in self.processes().items() if p != self.leader}
        end = time.monotonic() + STOP_TIMEOUT
        self._kill_all()
        if leader is not None:
            try:
                leader.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        while time.monotonic() < end:
            left = self.pids()
            if not left:
                break
            self._kill_all()  # a process forked while the others were being killed
            time.sleep(0.01)  # polling the kernel's process table until SIGKILL took effect
        return sorted(others.values())

    def close(self) -> None:
        """Give back what the tree holds (its cgroup); call after `end`."""


class CgroupTree(Tree):
    """A tree that is a cgroup v2 of its own: a server's descendants cannot leave it."""

    kind = "cgroup"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def prefix(self) -> list[str]:
        # The server joins its cgroup before it execs, so even its first fork is inside; the
        # shell execs the server, which keeps the pid the harness watches.
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs")]

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [p for p in map(int, text.split()) if _live(p)]

    def _kill_all(self) -> None:
        try:
            (self.path / "cgroup.kill").write_text("1")  # Linux 5.14: the kernel kills all, forks included
        except OSError:
            super()._kill_all()

    def close(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass  # a process still in it: cleanup_stale takes it once this harness is gone


def new() -> Tree:
    """A tree for the next server: a cgroup of its own where one can be made, else its session."""
    global _swept
    where = parent()
    if where is None:
        return Tree()
    if not _swept:
        _swept = True
        cleanup_stale()
    path = where / f"echoconf-{os.getpid()}-{next(_seq)}"
    try:
        path.mkdir()
    except OSError:
        return Tree()
    return CgroupTree(path)


def cleanup_stale() -> list[str]:
    """End and remove the server cgroups of harnesses that are gone (killed with SIGKILL before
    they could); returns their paths."""
    where = parent()
    removed: list[str] = []
    if where is None:
        return removed
    for path in sorted(where.glob("echoconf-*")):
        m = re.fullmatch(r"echoconf-(\d+)-\d+", path.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        tree = CgroupTree(path)
        tree.end()
        tree.close()
        removed.append(str(path))
    return removed
