"""The lab: internal Docker networks and the server containers on them.

The server runs in a container on an *internal* Docker network (no outside connectivity). The
harness reaches it either from the host (the bridge holds the network's gateway address, so the
host has a route to it) or from inside a container (the echoconf image with the Docker socket
mounted), which `Lab` then attaches to the same network.

Each server is two containers: a *holder* that owns the network namespace (its address, its
`net.*` sysctls, its place on the network) and the *server* proper, which joins that namespace
(`--network container:HOLDER`) and carries the process limits (nofile, memory, CPU). So the
server can be killed and restarted while its address and its sockets in TIME_WAIT stay, which is
what "binds again at once" is about; and the network can be cut without touching the process.

    with Lab() as lab:
        srv = lab.start_server("echoconf:latest", ["echo-epoll", "--port", "{port}"], 7, "tiny-buffers")
        ...connect to srv.address, srv.port...
        print(srv.exit_reason() or "alive")

The harness's view of a running server container (deaths, restarts, faults) is
container.DockerTarget; the environment profiles, the engine client and the death and readiness
helpers are dockerenv's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import docker
import docker.errors
import docker.models.containers
import docker.models.networks
import docker.types

from . import shared_ns
from .dockerenv import (BASE_IMAGE, COMMAND_LABEL, HOLD_FDS_PATH, LABEL, LISTENING, PORT_BLOCK_LABEL, PROFILE_LABEL,
                        READY_TIMEOUT, SHARED_NS_LABEL, DockerEnvError, EnvProfile, Log, ServerDied, _self_container,
                        can_connect, client, env_profile, exit_reason, has_ipv6, hostport, log_stderr,
                        start_holder, wait_accepting)

# Names, subnets and ids come from the OS's randomness: the harness's global `random` is
# reseeded by Hypothesis for every case, and two containers started in one case got one name.
_rng = random.SystemRandom()


class ServerContainer:
    """A server under test in a container of a `Lab`. Use `address`/`port` (or `target`)."""

    def __init__(
        self, lab: "Lab", server: docker.models.containers.Container,
        holder: docker.models.containers.Container | None, net_name: str, image: str,
        command: list[str] | None, port: int, prof: EnvProfile, udp: bool = False,
        owns_holder: bool = True,
    ) -> None:
        self.lab = lab
        self.udp = udp  # serves UDP alone: ready once its UDP port is bound
        self.image = image
        self.command = command
        self.port = port
        self.profile = prof
        self.name = server.name
        self._server = server
        self._holder = holder
        self._owns_holder = owns_holder  # False: a neighbour in another server's namespace
        self._starts = 0  # `listening` lines seen so far: a new one announces this start
        self._final: dict | None = None  # container state kept once it is removed
        self.first_start: float | None = None  # seconds from `docker run` until it first listened
        owner = holder or server  # the container that owns the network namespace
        owner.reload()
        settings = owner.attrs["NetworkSettings"]["Networks"][net_name]
        self.ipv4: str = settings["IPAddress"]
        self.ipv6: str | None = settings.get("GlobalIPv6Address") or None
        self.address: str = self.ipv6 if prof.ipv6 and self.ipv6 else self.ipv4

    # -- describing
    @property
    def target(self) -> str:
        """HOST:PORT as `echoconf run --target` takes it ([v6]:port for IPv6)."""
        return hostport(self.address, self.port)

    def describe(self) -> dict[str, object]:
        return {"kind": "docker", "image": self.image, "command": self.command, "container": self.name,
                "address": self.address, "port": self.port, "profile": self.profile.name,
                "profile_description": self.profile.description}

    def _state(self) -> dict:
        if self._final is not None:
            return self._final
        try:
            self._server.reload()
        except docker.errors.NotFound:
            return {"Status": "removed", "ExitCode": -1, "OOMKilled": False}
        return self._server.attrs["State"]

    def alive(self) -> bool:
        """Running (or paused: frozen, not dead)."""
        return self._state().get("Status") in ("running", "paused")

    def exit_reason(self) -> str | None:
        """None while alive; else "OOM-killed", "exited 139 (SIGSEGV)", "exited 0", ..."""
        return exit_reason(self._state(), self.profile.mem_limit)

    def logs(self) -> str:
        if self._final is not None:
            return self._final.get("_logs", "")
        try:
            return self._server.logs(stdout=True, stderr=True).decode(errors="replace")
        except docker.errors.NotFound:
            return ""

    # -- readiness
    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Wait (bounded) until the server listens on an address reachable from here, without
        connecting to it (`wait_accepting`: the kernel's socket table, a refused connection on
        another port). Where the socket table cannot be read, until it accepts a connection: its
        `listening ADDR PORT` line, when it prints one, is noted (and quoted when it never becomes
        reachable) but is not enough alone. Returns the seconds waited; ServerDied when the
        container ends first."""
        start = time.monotonic()
        try:
            # Without spending a client: a server that exits after its first one must meet
            # that client in a case, not here.
            wait_accepting(self._server, self.address, self.port, timeout, self._holder, self.profile.mem_limit,
                           also=[a for a in (self.ipv4, self.ipv6) if a and a != self.address], udp=self.udp)
            self._starts = len(LISTENING.findall(self.logs()))
            return time.monotonic() - start
        except ServerDied:
            raise
        except DockerEnvError as e:
            raise DockerEnvError(f"{e}\n{self.logs()[-2000:]}") from None
        except ValueError:
            pass  # listeners unreadable here: probe by connecting
        deadline = start + timeout
        announced = False
        while True:
            lines = LISTENING.findall(self.logs())
            if len(lines) > self._starts:
                self._starts = len(lines)
                announced = True
            # Also reachable from here: a fresh IPv6 address stays unusable while the kernel
            # runs duplicate address detection, after the server already listens.
            if self._answers():
                self._starts = len(LISTENING.findall(self.logs()))
                return time.monotonic() - start
            if not self.alive():
                raise ServerDied(f"{self.name} ended before listening: {self.exit_reason()}\n{self.logs()[-2000:]}")
            if time.monotonic() > deadline:
                said = " ".join(lines[-1][:2]) if lines else ""
                hint = (f" (it printed `listening {said}`: a loopback-only listener cannot be reached "
                        "from another network namespace; listen on 0.0.0.0 or ::)") if announced else ""
                raise DockerEnvError(f"{self.name} not accepting on {self.target} after {timeout:.0f}s{hint}\n"
                                     f"{self.logs()[-2000:]}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        """Whether a client is served: a connection accepted, or for a UDP-only server a
        datagram answered (the probe's; spent only where the socket table cannot be read)."""
        if self.udp:
            from .udpclient import probe

            return probe((self.address, self.port), 0.4) is None
        return can_connect(self.address, self.port, timeout=0.2)

    # -- a restart on the same address (private instances: fresh_container.FreshContainer)
    def kill(self, timeout: float = READY_TIMEOUT) -> None:
        """SIGKILL the server's processes and wait for the container to end; its network
        namespace stays when a holder keeps it (`Lab.start_server(restartable=True)`)."""
        self._starts = len(LISTENING.findall(self.logs()))
        self._server.kill(signal="SIGKILL")
        self._server.wait(timeout=int(timeout) + 1)

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the killed server again in its namespace; returns once it listens (ServerDied
        when it ends first)."""
        self._server.start()
        self.wait_ready(timeout)

    def stop(self, timeout: int = 3) -> str | None:
        """SIGTERM (SIGKILL after `timeout`), keep the final state and logs, remove the containers.
        Returns the exit reason."""
        if self._final is None:
            try:
                if self._state().get("Status") == "paused":
                    self._server.unpause()
                self._server.stop(timeout=timeout)
            except docker.errors.DockerException:
                pass
            st = dict(self._state())
            st["_logs"] = self.logs()
            self._final = st
            for ctr in (self._server, self._holder if self._owns_holder else None):
                if ctr is None:
                    continue
                try:
                    ctr.remove(force=True)
                except docker.errors.DockerException:
                    pass
            self.lab._servers.discard(self)
        return self.exit_reason()


# --------------------------------------------------------------------------------------------
# The lab: internal networks and the containers on them


@dataclass
class _Net:
    network: docker.models.networks.Network
    name: str
    subnet4: str
    subnet6: str | None
    handed_out: int = 1  # host numbers given to containers so far (1 is the gateway's)

    def next_addresses(self) -> tuple[str, str | None]:
        """A fresh IPv4 (and IPv6) address for a container, never one handed out before in this
        lab. Docker would give a container the lowest free address, so while a server is cut off
        the network (docker.disconnect-reconnect) the next container could take its address and
        the server could not come back on it."""
        self.handed_out += 1
        net4 = ipaddress.ip_network(self.subnet4)
        if self.handed_out >= shared_ns.first_host(net4.num_addresses):  # the top is the shared holders'
            raise DockerEnvError(f"no address left in {self.subnet4} for another container")
        a4 = str(net4.network_address + self.handed_out)
        a6 = str(ipaddress.ip_network(self.subnet6).network_address + self.handed_out) if self.subnet6 else None
        return a4, a6


class Lab:
    """Context manager: internal Docker network(s) and the server containers on them; everything
    is removed on exit, the namespace holders that child harnesses shared in it too
    (`shared_ns`). The IPv4 network is made at once; the IPv6 (dual-stack, ULA) one when first
    needed, or at once with ipv6=True, so that the child harnesses of a run can share it. When
    this process runs in a container, that container is attached to the networks so it can
    reach the servers."""

    def __init__(self, ipv6: bool = False, holder_image: str = BASE_IMAGE, log: Log = log_stderr) -> None:
        self.client = client()
        self.holder_image = holder_image
        self.log = log
        self.id = f"{os.getpid()}-{_rng.randrange(16**6):06x}"
        self._nets: dict[bool, _Net] = {}
        self._servers: set[ServerContainer] = set()
        self._self = _self_container(self.client)
        self._want_v6 = ipv6
        self._lock = threading.Lock()
        self._blocks = 0  # port blocks handed to servers so far (PORT_BLOCK_LABEL)

    def __enter__(self) -> "Lab":
        try:
            self.network()
            if self._want_v6:
                try:
                    self.network(ipv6=True)
                except DockerEnvError as e:  # those who need it try again, and say why they cannot
                    self.log(f"no dual-stack network yet: {e}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _labels(self) -> dict[str, str]:
        return {f"{LABEL}.lab": self.id, f"{LABEL}.host": socket.gethostname(), f"{LABEL}.pid": str(os.getpid())}

    def _free_subnet4(self) -> str:
        """A /24 in 10.213.0.0/16 that no Docker network and no host route uses."""
        used = []
        for n in self.client.networks.list():
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet"):
                    used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
        try:
            routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, timeout=5).stdout
            for tok in re.findall(r"^(\d+\.\d+\.\d+\.\d+/\d+)", routes, re.MULTILINE):
                used.append(ipaddress.ip_network(tok, strict=False))
        except (OSError, subprocess.SubprocessError):
            pass
        for third in _rng.sample(range(256), 256):
            cand = ipaddress.ip_network(f"10.213.{third}.0/24")
            if not any(cand.overlaps(u) for u in used if u.version == 4):
                return str(cand)
        raise DockerEnvError("no free /24 left in 10.213.0.0/16 for an internal network")

    def network(self, ipv6: bool = False) -> _Net:
        """The lab's internal network (IPv4, or dual-stack with a random ULA /64), made on first use."""
        with self._lock:
            if ipv6 in self._nets:
                return self._nets[ipv6]
            name = f"echoconf-{self.id}-{'v6' if ipv6 else 'v4'}"
            last: Exception | None = None
            for _ in range(5):  # another process may take the same subnet between look and create
                sub4 = self._free_subnet4()
                pools = [docker.types.IPAMPool(subnet=sub4)]
                sub6 = None
                if ipv6:
                    gid = _rng.randrange(1 << 40)  # RFC 4193 global id
                    sub6 = str(ipaddress.ip_network(((0xFD << 120) | (gid << 80), 64)))
                    pools.append(docker.types.IPAMPool(subnet=sub6))
                try:
                    net = self.client.networks.create(
                        name, driver="bridge", internal=True, enable_ipv6=ipv6,
                        ipam=docker.types.IPAMConfig(pool_configs=pools), labels=self._labels(),
                        check_duplicate=True,
                    )
                    break
                except docker.errors.APIError as e:
                    last = e
            else:
                raise DockerEnvError(f"cannot create the internal network: {last}")
            n = _Net(net, name, sub4, sub6)
            self._nets[ipv6] = n
            if self._self is not None:
                a4, a6 = n.next_addresses()
                net.connect(self._self, ipv4_address=a4, **({"ipv6_address": a6} if a6 else {}))
            self.log(f"internal network {name}: {sub4}" + (f", {sub6}" if sub6 else "")
                     + (f" (this container {self._self.name} attached)" if self._self else ""))
            return n

    def start_server(
        self,
        image: str,
        command: Sequence[str] | str | None,
        port: int = 7,
        profile_name: str | EnvProfile = "default",
        ready_timeout: float = READY_TIMEOUT,
        name: str | None = None,
        environment: dict[str, str] | None = None,
        sysctls: dict[str, str] | None = None,
        ipv6: bool = False,
        hold_fds: int = 0,
        hold_fds_launcher: str | None = None,
        nofile: int | None = None,
        restartable: bool = True,
        udp: bool = False,
        neighbour_of: docker.models.containers.Container | None = None,
        shared_namespace: bool = False,
    ) -> ServerContainer:
        """Run `image` (with `command`, `{port}` substituted; None: the image's own command, which
        must listen on `port`) under the profile, on the lab's internal network; returns once it
        listens. DockerEnvError (ServerDied) when it never does.

        For a private instance (`fresh_container.FreshContainer`): `sysctls` on top of the
        profile's, a dual-stack network with `ipv6`, and `hold_fds` descriptors held open in the
        server's process by `hold_fds_launcher` (a static echoconf-hold-fds, bind-mounted and
        put before the image's entrypoint); `nofile`, a descriptor limit instead of the
        profile's. Without `restartable` the server owns its network namespace itself (no
        holder): a container fewer to start, for an instance that is never killed and started
        again on its address. `udp`: the server serves UDP alone, and is ready once its UDP port
        is bound. `neighbour_of`: a running namespace holder (another server's) whose network
        namespace the server joins, on a port of its own (`port`): its address, network and
        sysctls are that server's, it can be killed and started again there, and the holder
        stays when it is removed. A container start that makes no namespace costs the engine a
        fifth of one that does.

        `shared_namespace`: the server joins a namespace with its profile's network that the
        lab's servers and their private instances share (`shared_ns`), on the first port of its
        block (`port` is not used; its command must take `{port}`): a container start fewer,
        for a server whose network is never cut (no fault cases). Every other server of the lab
        gets a block of ports of its own for its private instances."""
        prof = env_profile(profile_name)
        block: int | None = None
        if neighbour_of is None:
            with self._lock:
                block, self._blocks = self._blocks, self._blocks + 1
        if shared_namespace:
            if neighbour_of is not None or sysctls or ipv6:
                raise DockerEnvError("a server in a shared namespace has its profile's network alone")
            parts = (command.split() if isinstance(command, str) else list(command or []))
            if not any("{port}" in p for p in parts):
                raise DockerEnvError("a server in a shared namespace must be told its port: `{port}` in its command")
            assert block is not None
            port = shared_ns.block_ports(block).start
            self.network(ipv6=prof.ipv6)
            neighbour_of = shared_ns.in_lab(self.client, self._labels(), self.holder_image, dict(prof.sysctls),
                                            prof.ipv6, ready_timeout)
            if neighbour_of is None:
                raise DockerEnvError(f"no shared namespace in lab {self.id}")
        if neighbour_of is not None:
            if sysctls or ipv6 and not has_ipv6(neighbour_of):
                raise DockerEnvError("a neighbour server cannot have sysctls or a network of its own")
            net_name = next(iter((neighbour_of.attrs.get("NetworkSettings") or {}).get("Networks") or {}), "")
            if not net_name:
                raise DockerEnvError(f"{neighbour_of.name} is on no network")
        else:
            net = self.network(ipv6=prof.ipv6 or ipv6)
            net_name = net.name
        argv: list[str] | None = None
        if command is not None:
            parts = command.split() if isinstance(command, str) else list(command)
            argv = [p.replace("{port}", str(port)) for p in parts]
        slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name or (argv[0] if argv else image.split("/")[-1]))[:40]
        base = f"echoconf-{self.id}-{slug}-{prof.name}-{_rng.randrange(16**4):04x}"
        extra: dict[str, Any] = {}
        if hold_fds:
            if not hold_fds_launcher:
                raise DockerEnvError("holding descriptors in a server container needs echoconf-hold-fds "
                                     "(cmake --workflow --preset release builds it)")
            try:
                img_cfg = self.client.images.get(image).attrs["Config"]
            except docker.errors.DockerException as e:
                raise DockerEnvError(f"cannot inspect {image}: {e}") from e
            entry = img_cfg.get("Entrypoint") or []
            if argv is None:
                argv = img_cfg.get("Cmd") or []
            extra = {"entrypoint": [HOLD_FDS_PATH, str(hold_fds), *entry],
                     "volumes": {hold_fds_launcher: {"bind": HOLD_FDS_PATH, "mode": "ro"}}}
        try:
            self.client.images.get(self.holder_image)
        except docker.errors.ImageNotFound:
            raise DockerEnvError(f"{self.holder_image} is missing (docker/base-image makes it)") from None
        api = self.client.api
        netcfg = {"sysctls": {**prof.sysctls, **(sysctls or {})} or None, "hostname": slug[:60]}
        endpoint: dict[str, Any] = {}
        holder = neighbour_of
        if neighbour_of is None:
            with self._lock:
                a4, a6 = net.next_addresses()
            endpoint = api.create_endpoint_config(ipv4_address=a4, ipv6_address=a6)
        if restartable and neighbour_of is None:
            try:
                holder = start_holder(self.client, self.holder_image, f"{base}-net", net.name, (a4, a6),
                                      netcfg["sysctls"], self._labels(), netcfg["hostname"])
            except docker.errors.DockerException as e:
                raise DockerEnvError(f"cannot start the network holder for {image}: {e}") from e
        nofile = nofile or prof.nofile
        t0 = time.monotonic()
        try:
            server = self._run_server(image, argv, base, prof, nofile, environment, extra, holder, net_name,
                                      endpoint, netcfg, command, block)
        except docker.errors.DockerException as e:
            if holder is not None and neighbour_of is None:
                holder.remove(force=True)
            raise DockerEnvError(f"cannot start {image}: {e}") from e
        srv = ServerContainer(self, server, holder, net_name, image, argv, port, prof, udp,
                              owns_holder=holder is not neighbour_of)
        self._servers.add(srv)
        try:
            srv.wait_ready(ready_timeout)
        except DockerEnvError:
            srv.stop()
            raise
        srv.first_start = time.monotonic() - t0
        return srv

    def _run_server(self, image: str, argv: list[str] | None, name: str, prof: EnvProfile, nofile: int | None,
                    environment: dict[str, str] | None, extra: dict[str, Any],
                    holder: docker.models.containers.Container | None, net_name: str, endpoint: dict[str, Any],
                    netcfg: dict[str, Any], command: Sequence[str] | str | None,
                    port_block: int | None) -> docker.models.containers.Container:
        """Create and start the server container: in the holder's network namespace, or, without
        a holder, on the network in one of its own (`netcfg`: its sysctls and host name). The
        command as given (`{port}` unsubstituted) is kept in a label, so that a private instance
        can be started on another port of the same namespace (fresh_container), on ports of its
        `port_block`, for they may share a namespace with the lab's other servers and their
        instances (shared_ns)."""
        api = self.client.api
        ulimits = [docker.types.Ulimit(name="nofile", soft=nofile, hard=nofile)] if nofile else None
        mem = {"mem_limit": prof.mem_limit, "memswap_limit": prof.mem_limit} if prof.mem_limit else {}
        binds = extra.get("volumes") or {}
        host_config = api.create_host_config(
            network_mode=f"container:{holder.id}" if holder is not None else net_name, init=True,
            ulimits=ulimits, nano_cpus=prof.nano_cpus,
            binds=binds or None,
            **({} if holder is not None else {"sysctls": netcfg["sysctls"]}), **mem)
        labels = {**self._labels(), PROFILE_LABEL: prof.name}
        if command is not None:
            labels[COMMAND_LABEL] = json.dumps(command.split() if isinstance(command, str) else list(command))
        if port_block is not None:
            labels[PORT_BLOCK_LABEL] = str(port_block)
        made = api.create_container(
            image, argv, name=name, detach=True, labels=labels,
            environment=environment, entrypoint=extra.get("entrypoint"), host_config=host_config,
            volumes=[v["bind"] for v in binds.values()] or None,
            **({} if holder is not None else {
                "hostname": netcfg["hostname"],
                "networking_config": api.create_networking_config({net_name: endpoint})}),
        )
        server = self.client.containers.get(made["Id"])
        try:
            server.start()
        except docker.errors.DockerException:
            server.remove(force=True)
            raise
        return server

    def close(self) -> None:
        for srv in list(self._servers):
            srv.stop(timeout=2)
        try:
            shared = self.client.containers.list(
                all=True, filters={"label": [f"{LABEL}.lab={self.id}", SHARED_NS_LABEL]}, ignore_removed=True)
        except docker.errors.DockerException as e:
            shared = []
            self.log(f"could not list the shared namespace holders: {e}")
        for ctr in shared:
            try:
                ctr.remove(force=True)
            except docker.errors.DockerException as e:
                self.log(f"could not remove {ctr.name}: {e}")
        for n in self._nets.values():
            try:
                if self._self is not None:
                    n.network.disconnect(self._self, force=True)
            except docker.errors.DockerException:
                pass
            try:
                n.network.remove()
            except docker.errors.DockerException as e:
                self.log(f"could not remove network {n.name}: {e}")
        self._nets.clear()


def stale() -> list[tuple[str, Any]]:
    """The containers and networks left by labs of this host whose process is gone (a run that
    was SIGKILLed), as ("container" | "network", object), containers first."""
    c = client()
    host = socket.gethostname()

    def gone(labels: dict[str, str]) -> bool:
        if labels.get(f"{LABEL}.host") != host:
            return False
        try:
            os.kill(int(labels.get(f"{LABEL}.pid", "0")), 0)
            return False
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False

    flt = {"label": f"{LABEL}.lab"}
    return ([("container", x) for x in c.containers.list(all=True, filters=flt, ignore_removed=True) if gone(x.labels)]
            + [("network", n) for n in c.networks.list(filters=flt) if gone(n.attrs.get("Labels") or {})])


def cleanup_stale(log: Log = log_stderr) -> int:
    """Remove what `stale` finds. Returns how many were removed."""
    removed = 0
    for kind, obj in stale():
        try:
            obj.remove(**({"force": True} if kind == "container" else {}))
            removed += 1
        except docker.errors.DockerException:
            pass
    if removed:
        log(f"removed {removed} stale echoconf containers/networks")
    return removed
