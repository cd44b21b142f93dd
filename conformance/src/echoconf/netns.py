"""Network namespaces for cases that need kernel settings of their own (tiny socket buffers)
or addresses of their own (a second local address).

The server runs under `ip netns exec NS`; the harness creates its client sockets inside
the namespace by switching only the calling thread with setns(2) and back. A socket
stays in the namespace it was created in, so nothing else in the harness is affected.
The same works for any process's namespace this host can see (`socket_in`, `add_addresses`):
a server container's, for example.
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
    """A throwaway network namespace with loopback up, `sysctls` set and `addresses` added to
    its loopback. Use as a context manager."""

    def __init__(self, sysctls: dict[str, str] | None = None, addresses: tuple[str, ...] = ()) -> None:
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
        self.addresses = addresses
        self._created = False

    def __enter__(self) -> "NetNS":
        try:
            _run("ip", "netns", "add", self.name)
            self._created = True
            _run("ip", "-n", self.name, "link", "set", "lo", "up")
            for key, value in self.sysctls.items():
                _run("ip", "netns", "exec", self.name, "sysctl", "-q", "-w", f"{key}={value}")
            for addr in self.addresses:
                _run("ip", "-n", self.name, *_addr_add(addr))
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

    def socket(self, family: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket (TCP unless `kind` says otherwise) that lives in this namespace."""
        return _socket_at(f"{NETNS_DIR}/{self.name}", family, kind)


def _addr_add(addr: str) -> list[str]:
    """`ip addr replace` arguments for one more address on loopback (a no-op when it is there
    already): a host address (/32, /128), IPv6 without duplicate address detection, so that it
    is usable at once."""
    if ":" in addr:
        return ["-6", "addr", "replace", f"{addr}/128", "dev", "lo", "nodad"]
    return ["addr", "replace", f"{addr}/32", "dev", "lo"]


def _socket_at(ns_path: str, family: int, kind: int) -> socket.socket:
    with _lock:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(ns_path, os.O_RDONLY)
        except OSError:
            os.close(own)
            raise
        try:
            _setns(target)
            try:
                return socket.socket(family, kind)
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)


def socket_in(pid: int, family: int, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket in the network namespace of process `pid` (needs root): a client there reaches
    the server's own loopback addresses, whatever namespace the server runs in."""
    return _socket_at(f"/proc/{pid}/ns/net", family, kind)


def add_addresses(pid: int, addresses: tuple[str, ...]) -> None:
    """Add `addresses` to the loopback of process `pid`'s network namespace (a private server
    container's: the namespace goes with it). NetnsUnavailable when that cannot be done."""
    if shutil.which("nsenter") is None or shutil.which("ip") is None:
        raise NetnsUnavailable("adding an address needs nsenter (util-linux) and ip (iproute2)")
    for addr in addresses:
        _run("nsenter", f"--net=/proc/{pid}/ns/net", "ip", *_addr_add(addr))
