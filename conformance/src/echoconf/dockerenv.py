"""What every Docker part of the harness shares: the hostile environment profiles, the engine
client, where the harness runs, how a container's death is told, and readiness without a
client. The lab (networks and server containers) is lab.py; the harness's view of the server
container is container.py; the echoconf image is images.py; the fault timing is faults.py.

Only the Docker SDK (Debian's python3-docker) and the standard library are needed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import docker
import docker.errors
import docker.models.containers

from . import listeners as proc_listeners
from .netns import TINY_BUFFERS

IMAGE = "echoconf:latest"
BASE_IMAGE = "debian:bookworm-slim"
DOCKERFILE = "docker/Dockerfile"
LABEL = "org.echoconf"  # every container and network this module creates carries LABEL.lab
PROFILE_LABEL = f"{LABEL}.profile"  # on a server container: the environment profile it runs under
COMMAND_LABEL = f"{LABEL}.command"  # on a server container: its command, JSON, `{port}` unsubstituted
PORT_BLOCK_LABEL = f"{LABEL}.port-block"  # on a server container: the block of ports its private instances take
SHARED_NS_LABEL = f"{LABEL}.shared-ns"  # on a namespace holder that the harnesses of one lab share
HOLD_FDS_PATH = "/.echoconf-hold-fds"  # where a server container sees echoconf-hold-fds
CONTEXT_LABEL = "org.echoconf.context"  # image label: hash of the build context it was built from
READY_TIMEOUT = 10.0
LISTENING = re.compile(proc_listeners.ANNOUNCEMENT, re.MULTILINE)

Log = Callable[[str], None]


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class DockerEnvError(RuntimeError):
    """Docker could not provide what was asked (no engine, build failed, server never ready):
    a harness error, exit status 2."""


class ServerDied(DockerEnvError):
    """The server container ended while we waited for it to listen."""


# --------------------------------------------------------------------------------------------
# Profiles


@dataclass(frozen=True)
class EnvProfile:
    """A hostile environment for the server container. Named in every report line."""

    name: str
    description: str
    sysctls: dict[str, str] = field(default_factory=dict)  # on the holder: per network namespace
    nofile: int | None = None
    mem_limit: str | None = None
    nano_cpus: int | None = None
    ipv6: bool = False


ENV_PROFILES: dict[str, EnvProfile] = {
    p.name: p
    for p in (
        EnvProfile("default", "no constraint"),
        EnvProfile(
            "tiny-buffers",
            "net.ipv4.tcp_wmem and tcp_rmem of 4 KiB: nearly every send is short",
            sysctls=TINY_BUFFERS,
        ),
        EnvProfile("low-nofile", "RLIMIT_NOFILE 64: descriptor exhaustion and leaks show", nofile=64),
        EnvProfile("memory", "64 MiB memory limit, no swap: unbounded buffering is OOM-killed", mem_limit="64m"),
        EnvProfile("cpu", "half a core (nano_cpus 0.5e9)", nano_cpus=500_000_000),
        EnvProfile("ipv6", "served and tested over IPv6 (ULA subnet on the internal network)", ipv6=True,
                # No duplicate address detection: its ~2 s of tentative address is just a delay here.
                sysctls={"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}),
    )
}


def env_profile(name: str | EnvProfile) -> EnvProfile:
    if isinstance(name, EnvProfile):
        return name
    try:
        return ENV_PROFILES[name]
    except KeyError:
        raise DockerEnvError(f"unknown environment profile {name!r} (known: {', '.join(ENV_PROFILES)})") from None


# --------------------------------------------------------------------------------------------
# Engine and images


def client(timeout: int = 120) -> docker.DockerClient:
    """A client for the local engine (DOCKER_HOST honoured); DockerEnvError when it does not answer."""
    try:
        c = docker.from_env(timeout=timeout)
        # requests looks for proxies in os.environ on every call, iterating it; pytest sets and
        # removes PYTEST_CURRENT_TEST in the main thread meanwhile, while private instances
        # start in others, and the iteration then raises KeyError. The engine is reached over
        # its socket or DOCKER_HOST, never through an HTTP proxy.
        c.api.trust_env = False
        c.ping()
        return c
    except (docker.errors.DockerException, OSError) as e:
        raise DockerEnvError(f"the Docker engine does not answer: {e}") from e


# --------------------------------------------------------------------------------------------
# Where we run


def _self_container(c: docker.DockerClient) -> docker.models.containers.Container | None:
    """The container this process runs in, when it runs in one the engine knows (socket mounted)."""
    if not (os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")):
        return None
    try:
        return c.containers.get(socket.gethostname())
    except docker.errors.DockerException:
        return None


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def can_connect(addr: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.socket(_family(addr), socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((addr, port))
            return True
    except OSError:
        return False


def hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


# --------------------------------------------------------------------------------------------
# Servers


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def _mem_text(limit: int | str | None) -> str:
    if not limit:
        return ""
    if isinstance(limit, str):
        return limit
    return f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"


def start_holder(c: docker.DockerClient, image: str | None, name: str, network: str,
                 addresses: tuple[str, str | None], sysctls: dict[str, str] | None, labels: dict[str, str],
                 hostname: str) -> docker.models.containers.Container:
    """Create and start a network namespace holder (`sleep infinity` in `image`, 16 MiB) on
    `network` at `addresses` (IPv4, IPv6 or None) with `sysctls`; returns it running. The
    engine's exception when it does not start, the container removed."""
    api = c.api
    made = api.create_container(
        image, ["sleep", "infinity"], name=name, labels=labels, hostname=hostname,
        host_config=api.create_host_config(network_mode=network, init=True, sysctls=sysctls or None,
                                           mem_limit="16m"),
        networking_config=api.create_networking_config(
            {network: api.create_endpoint_config(ipv4_address=addresses[0], ipv6_address=addresses[1])}))
    ctr = c.containers.get(made["Id"])
    try:
        ctr.start()
    except docker.errors.DockerException:
        ctr.remove(force=True)
        raise
    ctr.reload()
    return ctr


def has_ipv6(ctr: docker.models.containers.Container) -> bool:
    """Whether the container has an IPv6 address on one of its networks."""
    nets = (ctr.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return any(n.get("GlobalIPv6Address") for n in nets.values())


def exit_reason(state: dict, mem_limit: int | str | None = None) -> str | None:
    """A container's end in a few words, from its State: None while it runs; "OOM-killed (memory
    limit 64m)", "exited 141 (SIGPIPE)", "exited 0", ... (what server_state and docker.alive say)."""
    if state.get("Status") in ("running", "paused", "created", "restarting"):
        return None
    code = int(state.get("ExitCode", -1))
    if state.get("OOMKilled"):
        return "OOM-killed" + (f" (memory limit {_mem_text(mem_limit)})" if mem_limit else "")
    if 128 < code < 128 + 65:  # Docker (and the init, tini) report a death by signal N as 128+N
        return f"exited {code} ({_signal_name(code - 128)})"
    if state.get("Status") == "removed":
        return "container removed"
    return f"exited {code}" + (f": {state['Error']}" if state.get("Error") else "")


def describe_death(state: dict, mem_limit: int | str | None = None, log_tail: str = "") -> str | None:
    """A container's death as a clause for a case's message ("the server container was killed by
    SIGPIPE (signal 13; ...)"), with the tail of its output; None while it runs."""
    if state.get("Status") in ("running", "paused", "created", "restarting"):
        return None
    code = int(state.get("ExitCode", -1))
    if state.get("OOMKilled"):
        how = ("was OOM-killed (State.OOMKilled" + (f", memory limit {_mem_text(mem_limit)}" if mem_limit else "")
               + f", exit status {code})")
    elif state.get("Status") == "removed":
        how = "was removed"
    elif 128 < code < 128 + 65:
        n = code - 128
        how = f"was killed by {_signal_name(n)} (signal {n}; container exit status {code} = 128 + {n})"
    else:
        how = f"exited with status {code}" + (f" ({state['Error']})" if state.get("Error") else "")
    tail = " | ".join(ln.strip() for ln in log_tail.strip().splitlines()[-6:] if ln.strip())
    return f"the server container {how}" + (f"; its last output: {tail[-500:]}" if tail else "")


# Readiness without a client (see listeners.py): the container's listening socket is read from
# the kernel's table of its network namespace, and reachability from here is shown by a
# connection refused on a port nobody listens on (the RST comes from the same kernel).

def pid_is_here(pid: int, container_id: str) -> bool:
    """Whether `pid`, the container's first process as the engine numbers it, is that process
    on this host: its cgroup names the container. In another PID namespace (the harness in a
    container of its own) the same number is another process or none; a marker file such as
    /.dockerenv cannot tell, since the engine's host may itself be a container."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return container_id in f.read()
    except OSError:
        return False


def listeners(ctr: docker.models.containers.Container,
              holder: docker.models.containers.Container | None = None,
              udp: bool = False) -> list[tuple[str, int]] | None:
    """The listening TCP sockets (`udp`: the bound UDP sockets) of the container's network
    namespace, without connecting: from /proc/PID/net when this host sees the container's
    processes (`pid_is_here`), else by `cat /proc/net/tcp*` (`udp*`) in the namespace holder.
    None when neither works."""
    pid = int(((ctr.attrs or {}).get("State") or {}).get("Pid") or 0)
    if pid_is_here(pid, ctr.id):
        socks = proc_listeners.of_pid(pid, udp=udp)
        if socks is not None:
            return socks
    if holder is not None:
        proto = "udp" if udp else "tcp"
        try:
            rc, out = holder.exec_run(["cat", f"/proc/net/{proto}", f"/proc/net/{proto}6"], demux=False)
            if rc in (0, 1) and out:  # 1: no tcp6/udp6 (IPv6 off); the IPv4 table was still printed
                return proc_listeners.parse(out.decode(errors="replace"),
                                            proc_listeners.UNCONNECTED if udp else proc_listeners.LISTEN)
        except docker.errors.DockerException:
            pass
    return None


def _unreachable(addr: str, closed_port: int, timeout: float = 0.3) -> str | None:
    """None when the address answers from here (a refused connection, RST, proves it), else
    what a connection to its closed port met instead."""
    try:
        with socket.socket(_family(addr), socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((addr, closed_port))
            return None  # something listens there after all: reachable too
    except ConnectionRefusedError:
        return None
    except socket.timeout:
        return f"no answer within {timeout:g} s"
    except OSError as e:
        return e.strerror or str(e)


def wait_accepting(ctr: docker.models.containers.Container, address: str, port: int, timeout: float,
                   holder: docker.models.containers.Container | None = None,
                   mem_limit: int | str | None = None, also: Sequence[str] = (), udp: bool = False) -> float:
    """Wait (bounded) until the container's server listens on `port` (`udp`: has its UDP port
    bound) on an address reachable from here, without ever connecting to that port. Returns the seconds waited; ServerDied when
    the container ends first; DockerEnvError when it does not listen in time (with the reason:
    not listening, loopback only, unreachable); ValueError when listeners cannot be read (the
    caller then probes by connecting)."""
    start = time.monotonic()
    deadline = start + timeout
    seen: list[tuple[str, int]] = []
    silent: list[str] = []  # the addresses that did not answer, with what met the connection
    closed = 9
    while True:
        try:
            ctr.reload()
            state = ctr.attrs["State"]
        except docker.errors.NotFound:
            state = {"Status": "removed", "ExitCode": -1}
        why = exit_reason(state, mem_limit)
        if why is not None:
            try:
                logs = ctr.logs(stdout=True, stderr=True, tail=40).decode(errors="replace")
            except docker.errors.DockerException:
                logs = ""
            raise ServerDied(f"{ctr.name} ended before listening: {why}\n{logs[-2000:]}")
        socks = listeners(ctr, holder, udp)
        if socks is None:
            raise ValueError("cannot read the container's listening sockets")
        seen = [s for s in socks if s[1] == port]
        if proc_listeners.accepts_on(seen, address, port):
            closed = next(p for p in (9, 1, 65535, 65534) if p not in {q for _, q in socks})
            # The container's other addresses (`also`: a dual-stack network's IPv6) must answer
            # too: a fresh IPv6 address is unusable while the kernel runs duplicate address
            # detection, which under load outlasts a case's connect. Only the address is waited
            # for, never the server's listening on it: that is for the cases to judge.
            silent = [f"{a} ({why})" for a in (address, *also) if (why := _unreachable(a, closed))]
            if not silent:
                return time.monotonic() - start
        if time.monotonic() > deadline:
            if seen and not proc_listeners.accepts_on(seen, address, port):
                hint = (f" (it listens on {', '.join(hostport(a, p) for a, p in seen)} only: a loopback-only "
                        "listener cannot be reached from another network namespace; listen on 0.0.0.0 or ::)")
            elif seen:
                hint = (f" (it listens, but a connection from here to its closed port {closed} got no reset at "
                        f"{' and '.join(silent)})")
            else:
                hint = (f" (nothing is bound to UDP port {port}" if udp else f" (nothing listens on port {port}") \
                    + " in its network namespace)"
                if not udp and any(p == port for _, p in listeners(ctr, holder, udp=True) or []):
                    hint += (f"; a UDP socket is bound to port {port}: for a server that serves UDP alone, "
                             "say --transport udp")
            raise DockerEnvError(f"{ctr.name} not accepting on {hostport(address, port)} after {timeout:.0f}s{hint}")
        time.sleep(0.02)


def probe(addr: str, port: int, timeout: float = 1.0) -> str | None:
    """The harness's liveness probe (client.probe: connect within 2 s, one SYN retransmission,
    then b"ping" back within `timeout`); None when it passed, else what happened."""
    from .client import probe as client_probe

    return client_probe((addr, port), timeout)
