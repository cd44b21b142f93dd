"""Private instances of a server image, for the cases that perturb the server (fixture
fresh_server) when the suite runs under `echoconf run --image`.

Locally those cases start the server command again (`target.OwnedServer`). Here they start the
image under test again, as the run's server container was started (same image, command and
environment profile). Where its command takes `{port}`, an instance is a *neighbour* on a port
of its own (`placement`): in the run's server's network namespace when the instance needs no
other network, else in one that the harnesses of the server's lab share (`shared_ns`: the
matrix's cells, the profiles of one `--image` run). Else it gets a namespace of its own on an
internal network of this harness's own `lab.Lab`:

- robust.fd-exhaustion lowers RLIMIT_NOFILE with prlimit(2) on the server's pid, and robust.eintr
  sends it SIGSTOP and SIGCONT, both as this host sees the process (the harness runs on the
  Docker host, as root: `DockerTarget.observable`);
- robust.restart-rebind kills the server container and starts it again in the same network
  namespace, which a holder container keeps: the old connections' sockets (TIME_WAIT) are
  still there, as they are for a local process restarted on its port. The other instances
  are never restarted and get no holder (a container start is most of a private instance's
  cost);
- partial.tiny-buffers gives the instance's network namespace tcp_wmem/tcp_rmem of 4 KiB;
- robust.ipv6 puts the instance on a dual-stack network;
- udp.reply-source adds an address to the loopback of the instance's network namespace (with
  nsenter, as this host's root; `ip addr replace`, for another run may have added it to a
  shared namespace);
- robust.fd-setsize runs the image's entrypoint under echoconf-hold-fds (a static binary,
  bind-mounted), which holds 1016 descriptors open and execs it in place.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import socket
import threading
from typing import Any, Callable

from .caselib import Fresh
from .client import Addr, SocketFactory
from .container import DockerTarget
from .target import HarnessError

HOLD_FDS_BINARY = "echoconf-hold-fds"


class CannotRun(HarnessError):
    """The case's private instance cannot be had in this environment (the report says why)."""


def placement(template: DockerTarget, inst: Fresh,
              shared: Callable[[Any, dict[str, str], bool], Any] | None = None) -> tuple[list[str], Any] | None:
    """Where `inst` can run as a neighbour, as (its command, the holder of the network namespace
    it joins): the run's server's namespace when that has the network the instance needs (the
    same sysctls; IPv6 when it listens on "::"), else a namespace with that network that the
    harnesses of the server's lab share (`shared`, by default `shared_ns.holder`). None when it
    needs a namespace of its own: a command that cannot be told another port (an image's own
    command; a --command-in-image without `{port}`), a server without a namespace holder, or
    no lab to share a namespace in."""
    import json

    from . import dockerenv as de
    from . import shared_ns

    labels = (template._container().attrs.get("Config") or {}).get("Labels") or {}
    holder = template._holder  # known once the container is
    command = json.loads(labels.get(de.COMMAND_LABEL) or "null")
    if holder is None or not command or not any("{port}" in part for part in command):
        return None
    prof = de.env_profile(labels.get(de.PROFILE_LABEL, "default"))
    ipv6 = prof.ipv6 or (inst.host is not None and ":" in inst.host)
    want = {**prof.sysctls, **inst.sysctl_map}
    # Duplicate address detection only delays a new address: a namespace whose address is
    # already up serves without it.
    dad = de.ENV_PROFILES["ipv6"].sysctls

    def network(sysctls: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in sysctls.items() if k not in dad}

    same = network((holder.attrs.get("HostConfig") or {}).get("Sysctls") or {}) == network(want)
    if same and (de.has_ipv6(holder) or not ipv6):
        return list(command), holder
    other = (shared or shared_ns.holder)(holder, {**dad, **want} if ipv6 else want, ipv6)
    return (list(command), other) if other is not None else None


def launch(lab: Any, template: DockerTarget, inst: Fresh, port: Callable[[Any], int]) -> Any:
    """Start a private container of `template`'s image with `inst`'s settings: as a neighbour
    (`placement`: in the run's server's network namespace or one its lab shares, on the port
    `port(holder)` gives), else on `lab`'s network in a namespace of its own. Returns the
    `lab.ServerContainer` once it listens. CannotRun when the instance cannot be had here,
    HarnessError when it does not start."""
    import docker.errors

    from . import dockerenv as de
    from . import registry

    ctr = template._container()
    cfg = ctr.attrs.get("Config") or {}
    prof = de.env_profile((cfg.get("Labels") or {}).get(de.PROFILE_LABEL, "default"))
    ipv6 = inst.host is not None and ":" in inst.host
    want = inst.sysctl_map
    try:
        placed = placement(template, inst)
    except (de.DockerEnvError, docker.errors.DockerException) as e:
        raise HarnessError(f"could not start a shared network namespace for a private instance: "
                           f"{str(e).splitlines()[0]}") from None
    if ipv6 and placed is None:
        want = {**de.ENV_PROFILES["ipv6"].sysctls, **want}
    launcher = None
    nofile = None
    if inst.hold_fds:
        if prof.nofile is not None and prof.nofile < inst.hold_fds + 64:
            # The case is about descriptors above 1023, which the profile's limit (low-nofile:
            # 64) forbids; the profile's own point is judged by the cases on the run's server.
            nofile = inst.hold_fds + 1024
        path = registry.find_binary(HOLD_FDS_BINARY)
        if path is None:
            raise CannotRun(f"{HOLD_FDS_BINARY} not found in {', '.join(map(str, registry.bin_dirs()))}: "
                            f"{registry.BUILD_HINT}")
        launcher = str(path)
    where: dict[str, Any] = {"command": cfg.get("Cmd"), "port": template.addr[1], "sysctls": want, "ipv6": ipv6,
                             "restartable": inst.restarts}
    if placed is not None:
        command, holder = placed
        where = {"command": command, "port": port(holder), "neighbour_of": holder}
    try:
        return lab.start_server(
            cfg.get("Image") or ctr.image.tags[0], profile_name=prof, name=f"fresh-{ctr.name[-12:]}",
            hold_fds=inst.hold_fds, hold_fds_launcher=launcher, nofile=nofile, udp=template.udp, **where)
    except (de.DockerEnvError, docker.errors.DockerException) as e:
        # The engine's failure, never the server's: a harness error, not a verdict.
        raise HarnessError(f"could not start a private instance of the server image: "
                           f"{str(e).splitlines()[0]}") from None


class FreshContainer(DockerTarget):
    """A private server container of a `Lab` (`launch`ed like the run's `template`
    container, with the case's settings). Stopped (both containers removed) at the end of
    the case, by `retire` when given (in the background: the case's verdict and the
    instance's deaths are known by then)."""

    owned = True

    def __init__(self, srv: Any, template: DockerTarget, factory: SocketFactory | None = None,
                 retire: Callable[[Any], None] | None = None) -> None:
        self._srv = srv
        self._retire = retire
        self.first_start = srv.first_start or 0.0
        # Under the ipv6 environment profile its IPv6 address, as for the run's server; a
        # neighbour of the run's server has that server's address and a port of its own.
        super().__init__(srv.name, srv.address, srv.port)
        self._factory = factory
        self.ipv4_address: str = srv.ipv4
        self.ipv6_address: str | None = srv.ipv6

    @property
    def port(self) -> int:
        return self.addr[1]

    def factory(self) -> SocketFactory | None:
        return self._factory

    def family_addrs(self) -> list[Addr]:
        """Where the instance is reached over each address family its network has: IPv6 first."""
        return [(a, self.port) for a in (self.ipv6_address, self.ipv4_address) if a]

    def kill(self) -> None:
        """SIGKILL the server (its container's processes); the network namespace stays."""
        import docker.errors

        self._forget_state()
        try:
            self._srv.kill()
        except docker.errors.DockerException as e:
            raise HarnessError(f"could not kill the server container {self.container}: {e}") from None

    def start(self, port: int | None = None) -> None:
        """Start the killed container again in its network namespace and wait (bounded) until it
        listens; HarnessError, with how it ended, when it does not."""
        from . import dockerenv as de
        import docker.errors

        self._forget_state()
        try:
            self._srv.restart(self.restart_timeout)
        except de.ServerDied as e:
            raise HarnessError(f"the server {str(e).splitlines()[0].split(': ', 1)[-1]}") from None
        except (de.DockerEnvError, docker.errors.DockerException) as e:
            raise HarnessError(str(e).splitlines()[0]) from None

    def stop(self) -> None:
        if self._retire is not None:
            self._retire(self._srv)
        else:
            self._srv.stop(timeout=2)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": "private container"}


def tiny_buffers_factory(size: int = 4096) -> SocketFactory:
    """Client sockets with `size`-byte send and receive buffers: the server's namespace has tiny
    buffers (sysctls), this side the client's, as when both are in one namespace locally."""

    def make(family: int) -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        return s

    return make


class FreshContainers:
    """The private instances of one run: neighbours where they can be (`placement`), else on an
    internal network of a `Lab` made on first use (the holder image is the run's server's own
    holder's); removed with it.

    A container start costs the engine most of a CPU-second when it makes a network namespace,
    a third of that when it joins one, and it takes up to four seconds more when an IPv6
    address must first pass duplicate address detection. So the instances the run's cases
    declare are started in the background (`prepare`), two at a time, while the cases before
    them run; a case takes its own when it starts, or starts one then if none was prepared.
    Each is stopped and removed in the background too, once its case is over, except a
    `shared` one: the cases that declare it take the same container in turn, a new one only
    after it died."""

    def __init__(self, template: DockerTarget) -> None:
        self.template = template
        self._lab: Any = None
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._ready: dict[Fresh, list[concurrent.futures.Future[Any]]] = {}
        self._shared: dict[Fresh, Any] = {}  # a shared instance's container, by its key
        self._addresses: dict[int, set[str]] = {}  # addresses added, by the namespace's holder pid
        self._last_port: int | None = None  # the last port given, once the block is known

    @staticmethod
    def _key(inst: Fresh) -> Fresh:
        """Shared instances differ by their network alone; the addresses a case adds go to the
        one container they share."""
        return dataclasses.replace(inst, addresses=()) if inst.shared else inst

    def _port(self, holder: Any) -> int:
        """A port for a neighbour in `holder`'s namespace: from the run's server's block
        (`shared_ns.block_ports`), none that the namespace binds or that this run gave before."""
        from . import dockerenv as de
        from . import shared_ns

        with self._lock:
            if self._last_port is None:
                labels = (self.template._container().attrs.get("Config") or {}).get("Labels") or {}
                self._last_port = shared_ns.block_ports(int(labels.get(de.PORT_BLOCK_LABEL) or 0)).start - 1
            used = {p for _, p in (de.listeners(holder) or []) + (de.listeners(holder, udp=True) or [])}
            self._last_port += 1
            while self._last_port in used or self._last_port == self.template.addr[1]:
                self._last_port += 1
            return self._last_port

    def _launch(self, inst: Fresh) -> Any:
        return launch(self._lab_here(), self.template, inst, self._port)

    def unavailable(self) -> str | None:
        """Why private instances cannot be started here, or None."""
        if not self.template.observable:
            return ("the server container's processes cannot be seen from here (the harness runs in "
                    "another PID namespace than the Docker engine, or not as root)")
        return None

    def _lab_here(self) -> Any:
        from . import dockerenv as de
        from .lab import Lab

        with self._lock:
            if self._lab is None:
                holder = self.template._holder
                image = (holder.attrs.get("Config") or {}).get("Image") if holder is not None else None
                try:
                    self._lab = Lab(holder_image=image or de.BASE_IMAGE)
                except de.DockerEnvError as e:
                    raise HarnessError(f"cannot make a network for private server containers: {e}") from None
            return self._lab

    def _background(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self.template._container()  # looked up once, here, not by two threads at once
            self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="echoconf-fresh")
        return self._pool

    def prepare(self, wanted: list[Fresh]) -> None:
        """Start these instances in the background, in this order (the cases' order)."""
        for inst in wanted:
            key = self._key(inst)
            if inst.shared and key in self._ready:
                continue
            fut = self._background().submit(self._launch, key)
            self._ready.setdefault(key, []).append(fut)

    def _retire(self, srv: Any) -> None:
        self._background().submit(srv.stop, timeout=2)

    def _retire_shared(self, srv: Any) -> None:
        """Kept for the next case that shares it, unless it died (then that case starts another)."""
        if not srv.alive():
            with self._lock:
                self._shared = {k: v for k, v in self._shared.items() if v is not srv}
            self._retire(srv)

    def start(self, inst: Fresh) -> FreshContainer:
        """A private instance with `inst`'s settings: the shared one while it lives, a prepared
        one, or one started now."""
        key = self._key(inst)
        srv = self._shared.get(key) if inst.shared else None
        if srv is None:
            queued = self._ready.get(key)
            srv = queued.pop(0).result() if queued else self._launch(key)
            if inst.shared:
                self._shared[key] = srv
        factory = tiny_buffers_factory(inst.client_buffers) if inst.client_buffers else None
        fresh = FreshContainer(srv, self.template, factory,
                               retire=self._retire_shared if inst.shared else self._retire)
        if inst.addresses:
            from .netns import NetnsUnavailable, add_addresses

            # Once per namespace: a neighbour's is the run's server's, a shared one's outlives the case.
            holder_pid = fresh.session if srv._holder is None else int(srv._holder.attrs["State"]["Pid"])
            done = self._addresses.setdefault(holder_pid, set())
            try:
                add_addresses(fresh.pid, tuple(a for a in inst.addresses if a not in done))
            except NetnsUnavailable as e:
                fresh.stop()
                raise CannotRun(f"could not add {', '.join(inst.addresses)} to the server's network: {e}") from None
            done.update(inst.addresses)
        return fresh

    def close(self) -> None:
        """Stop the prepared instances no case took (their cases were skipped), then remove
        the network and whatever is left on it."""
        if self._pool is not None:
            for futs in self._ready.values():
                for f in futs:
                    f.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
            for futs in self._ready.values():
                for f in futs:
                    if not f.cancelled() and f.exception() is None:
                        f.result().stop(timeout=2)
            self._ready.clear()
        if self._lab is not None:
            self._lab.close()
            self._lab = None
