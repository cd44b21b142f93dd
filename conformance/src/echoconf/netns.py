"""Network namespaces for cases that need kernel settings of their own (tiny socket buffers).

The server runs under `ip netns exec NS`; the harness creates its client sockets inside
the namespace by switching only the calling thread with setns(2) and back. A socket
stays in the namespace it was created in, so nothing else in the harness is affected.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import socket
import subprocess
import threading
from itertools import count

CLONE_NEWNET = 0x40000000
# Socket buffers of 4 KiB for every TCP socket of a namespace: nearly every send is short.
# partial.tiny-buffers and the Docker environment profile `tiny-buffers` both use these.
TINY_BUFFERS = {"net.ipv4.tcp_wmem": "4096 4096 4096", "net.ipv4.tcp_rmem": "4096 4096 4096"}
_counter = count()
_lock = threading.Lock()
NETNS_DIR = "/run/netns"  # where `ip netns add` puts a namespace's name
_swept = False  # cleanup_stale once per process


class NetnsUnavailable(RuntimeError):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _run(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise NetnsUnavailable(f"`{' '.join(argv)}` failed: {res.stderr.strip() or res.returncode}")


def cleanup_stale() -> list[str]:
    """Delete the namespaces of harness processes that are gone (killed with SIGKILL, before
    they could delete their own); returns their names."""
    removed = []
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return removed
    for name in names:
        m = re.fullmatch(r"echoconf-(\d+)-\d+", name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        removed.append(name)
    return removed


class NetNS:
    """A throwaway network namespace with loopback up. Use as a context manager."""

    def __init__(self, sysctls: dict[str, str] | None = None) -> None:
        global _swept
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
        if not _swept:
            _swept = True
            cleanup_stale()
        self.name = f"echoconf-{os.getpid()}-{next(_counter)}"
        self.sysctls = sysctls or {}
        self._created = False

    def __enter__(self) -> "NetNS":
        try:
            _run("ip", "netns", "add", self.name)
            self._created = True
            _run("ip", "-n", self.name, "link", "set", "lo", "up")
            for key, value in self.sysctls.items():
                _run("ip", "netns", "exec", self.name, "sysctl", "-q", "-w", f"{key}={value}")
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def delete(self) -> None:
        if self._created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
            self._created = False

    def wrap(self, argv: list[str]) -> list[str]:
        """`ip netns exec` execs the command, so the pid stays the server's."""
        return ["ip", "netns", "exec", self.name, *argv]

    def socket(self, family: int) -> socket.socket:
        """A TCP socket that lives in this namespace."""
        with _lock:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            target = os.open(f"{NETNS_DIR}/{self.name}", os.O_RDONLY)
            try:
                _setns(target)
                try:
                    return socket.socket(family, socket.SOCK_STREAM)
                finally:
                    _setns(own)
            finally:
                os.close(target)
                os.close(own)
