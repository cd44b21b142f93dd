"""The server under test in a Docker container the harness watches, restarts and faults.

`echoconf run --image` starts the server container (`image.py`, `lab.Lab`) and runs the
suite in a child harness with `--target ADDR:PORT -- --echoconf-container NAME`. The child then
tests through a `DockerTarget`: connections go to the address like any `--target`, but a
death of the container (an exit, a signal, an OOM kill) is told like an owned process's
("the server container was killed by SIGPIPE (signal 13; ...)"), charged to the case, and the
container is started again in the same network namespace (same address and port) so the run
goes on. The harness never connects to find out whether the server is up: a server that exits
after its first client meets that client in a case.

The docker.* cases (cases/test_docker.py) use the rest: the descriptor limit of the environment
profile, and the faults (freeze, network cut, SIGKILL and restart) that faults.py times.
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import proctree
from .client import Addr
from .target import HarnessError, Target

RESTART_TIMEOUT = 15.0  # a restart must listen again within this (bind may wait out TIME_WAIT)
_ALIVE = ("running", "paused", "restarting", "created")
INITS = ("docker-init", "tini", "dumb-init")  # a container's init that runs the server as its child


class DockerTarget(Target):
    """A server container (named or by id) at HOST:PORT, an address literal. Not a `RemoteTarget`:
    the harness runs this server, so nothing probes it before the first case (no path
    measurement, no connection to see whether it is up); between cases it is treated like a
    local server (shared.SharedServer.settle). The container is the caller's: it is restarted after
    a death but never removed or stopped here."""

    owned = False
    reports_death = True

    def __init__(self, container: str, host: str, port: int, restart_timeout: float = RESTART_TIMEOUT,
                 first_start: float | None = None, udp: bool = False) -> None:
        self._seen: bool | None = None
        self.udp = udp  # serves UDP alone: listening means its UDP port is bound
        self.first_start = first_start  # seconds from `docker run` until it first listened
        self.container = container
        self._addr: Addr = (host, port)
        self.name = f"{host}:{port}"
        self.restart_timeout = restart_timeout
        self.restarts = 0
        self.history: list[dict[str, Any]] = []  # one entry per death: how, when, the output tail
        self._ctr: Any = None
        self._holder: Any = None
        self._mem: int | None = None
        self._checked = False
        self._net: tuple[str, dict[str, str]] | None = None  # (network, addresses) while cut off
        self._running: tuple[int, str, dict[str, Any]] | None = None  # (pid, its start time, state)

    # -- Docker ------------------------------------------------------------------------
    def _container(self) -> Any:
        """The container, looked up on first use (HarnessError when the engine or it is gone)."""
        if self._ctr is None:
            try:
                from . import dockerenv as de
                import docker.errors
            except ImportError as e:
                raise HarnessError(f"--echoconf-container needs the Docker SDK for Python: {e}") from e
            try:
                c = de.client(timeout=60)
                self._ctr = c.containers.get(self.container)
                host_cfg = self._ctr.attrs.get("HostConfig") or {}
                mode = host_cfg.get("NetworkMode") or ""
                if mode.startswith("container:"):
                    self._holder = c.containers.get(mode.split(":", 1)[1])
                self._mem = host_cfg.get("Memory") or None
            except de.DockerEnvError as e:
                raise HarnessError(f"cannot watch container {self.container}: {e}") from e
            except docker.errors.DockerException as e:
                raise HarnessError(f"cannot watch container {self.container}: {e}") from e
        return self._ctr

    def _state(self) -> dict[str, Any]:
        """The container's state as the engine reports it. While it runs and this host sees its
        processes, its first process standing (same pid, same start time) is proof enough that
        it still runs: the harness asks after every case and before each look at the process,
        hundreds of times a run, and an inspection costs the engine more CPU than the server
        under test gets. Anything else (gone, a zombie, another process with that number) asks
        the engine."""
        import docker.errors

        if self._running is not None and proctree.start_time(self._running[0]) == self._running[1]:
            return self._running[2]
        self._running = None
        ctr = self._container()
        try:
            ctr.reload()
        except docker.errors.NotFound:
            return {"Status": "removed", "ExitCode": -1, "OOMKilled": False}
        except docker.errors.DockerException as e:
            raise HarnessError(f"cannot inspect container {self.container}: {e}") from e
        st = ctr.attrs.get("State") or {}
        pid = int(st.get("Pid") or 0)
        if st.get("Status") == "running" and self._seen and _seen_here(pid, ctr.id) is None:
            start = proctree.start_time(pid)
            if start is not None:
                self._running = (pid, start, st)
        return st

    def _forget_state(self) -> None:
        """The harness changes the container's state itself (pause, kill, start): ask again."""
        self._running = None

    def _log_tail(self, lines: int = 40) -> str:
        """The last lines the container's current (or last) run wrote, stdout and stderr: its
        earlier runs, before restarts, are left out."""
        import docker.errors

        ctr = self._container()
        since = _epoch((ctr.attrs.get("State") or {}).get("StartedAt"))
        try:
            raw = ctr.logs(stdout=True, stderr=True, tail=lines * 4, timestamps=True).decode("utf-8", "replace")
        except docker.errors.DockerException:
            return ""
        kept = []
        for line in raw.splitlines():
            stamp, _, text = line.partition(" ")
            t = _epoch(stamp)
            if since is None or t is None or t >= since:
                kept.append(text if t is not None else line)
        return "\n".join(kept[-lines:])

    # -- Target ------------------------------------------------------------------------
    @property
    def addr(self) -> Addr:
        return self._addr

    @property
    def observable(self) -> bool:  # type: ignore[override]
        """Whether the container's processes are this host's: the harness runs in the engine's
        PID namespace (on the Docker host, not in a container of its own), as root. Then
        /proc/PID of the container's main process gives its descriptors, memory and run time
        exactly as for a local process."""
        if self._seen is None:
            try:
                self.pid
                self._seen = True
            except HarnessError:
                if self._state().get("Status") == "running":
                    self._seen = False
                else:
                    # Dead between cases: whether its processes could be seen is a property of
                    # where the harness runs, not of this moment; the namespace holder tells.
                    return self._holder_visible()
        return self._seen

    def _holder_visible(self) -> bool:
        """Whether this host sees the processes of the network-namespace holder (a container of
        the same lab, always running)."""
        self._container()
        if self._holder is None:
            return False
        try:
            self._holder.reload()
        except Exception:  # noqa: BLE001 - the engine failed: not seen
            return False
        self._seen = _seen_here(int((self._holder.attrs.get("State") or {}).get("Pid") or 0),
                                self._holder.id) is None
        return self._seen

    @property
    def session(self) -> int:
        """The container's first process (Docker's State.Pid), as this host sees it: it leads the
        session of every process in the container. Checked against its cgroup: in another PID
        namespace the same number is another process."""
        st = self._state()
        pid = int(st.get("Pid") or 0)
        if pid <= 0:
            raise HarnessError(f"the server container {self.container} is not running")
        why = _seen_here(pid, self._container().id)
        if why:
            raise HarnessError(f"the processes of container {self.container} cannot be seen from here ({why})")
        return pid

    def tree_pids(self) -> list[int]:
        """Every live process of the container: its cgroup's list, or, where that cannot be
        read, its first process's session (see Target.tree_pids)."""
        session = self.session
        pids = proctree.cgroup_pids(session)
        return pids if pids is not None else proctree.session_pids(session)

    @property
    def pid(self) -> int:
        """The server's main process: the container's first process, or, when that is an init
        (`docker run --init`, as the lab starts servers: docker-init, tini), the one it runs."""
        first = self.session
        try:
            with open(f"/proc/{first}/comm") as f:
                comm = f.read().strip()
            if comm not in INITS:
                return first
            with open(f"/proc/{first}/task/{first}/children") as f:
                children = f.read().split()
        except OSError as e:
            raise HarnessError(f"the server container {self.container} ended: {e}") from None
        if not children:
            raise HarnessError(f"the init of container {self.container} runs no server")
        return int(children[0])

    def death(self, grace: float = 0.0) -> str | None:
        """How the container died ("the server container exited with status 0; its last output:
        ..."), waiting up to `grace` seconds for a dying one; None while it runs."""
        from . import dockerenv as de

        end = time.monotonic() + grace
        while True:
            st = self._state()
            if st.get("Status") not in _ALIVE:
                return de.describe_death(st, self._mem, self._log_tail())
            if time.monotonic() >= end:
                return None
            time.sleep(0.05)

    def ensure_running(self) -> None:
        """Running: nothing to do (nothing connects to check). Dead: note how, start it again in
        the same network namespace and wait (bounded) until it listens again; HarnessError when
        it does not come back."""
        from . import dockerenv as de

        st = self._state()
        if st.get("Status") in _ALIVE:
            if self._seen is None and st.get("Status") == "running":
                self.observable  # settled while it runs (see `observable`)
            if self._checked:
                return
            self._checked = True
            try:
                self._wait_listening(self.restart_timeout, first=True)
                return
            except de.ServerDied:
                st = self._state()  # it died at the very start: noted and restarted below
        if st.get("Status") == "removed":
            raise HarnessError(f"the server container {self.container} was removed")
        self.history.append({
            "exit": de.describe_death(st, self._mem), "reason": de.exit_reason(st, self._mem),
            "started": st.get("StartedAt"), "finished": st.get("FinishedAt"),
            "oom_killed": bool(st.get("OOMKilled")), "exit_code": st.get("ExitCode"),
            "output_tail": self._log_tail(60)[-4000:], "stopped_by_harness": False,
        })
        self.restarts += 1
        self._checked = True
        self._restart()

    def _restart(self) -> None:
        import docker.errors

        from . import dockerenv as de

        end = time.monotonic() + self.restart_timeout
        last = ""
        while True:
            self._forget_state()
            try:
                self._container().start()
                self._wait_listening(max(0.5, end - time.monotonic()))
                return
            except de.ServerDied as e:
                # Exited again at once (a bind that waits out TIME_WAIT without SO_REUSEADDR, ...):
                # try again while the bound lasts.
                last = str(e).splitlines()[0]
            except docker.errors.DockerException as e:
                last = f"docker start failed: {e}"
            if time.monotonic() >= end:
                raise HarnessError(f"the server container {self.container} died and did not listen again "
                                   f"within {self.restart_timeout:.0f}s of being restarted: {last}")
            time.sleep(0.5)

    def _wait_listening(self, timeout: float, first: bool = False) -> None:
        from . import dockerenv as de
        from .client import can_connect
        from .udpclient import probe as udp_probe

        try:
            de.wait_accepting(self._container(), self._addr[0], self._addr[1], timeout, self._holder, self._mem,
                              udp=self.udp)
        except ValueError:
            # The socket table cannot be read from here: only a connection can tell, and it
            # is a client the server sees. At the first check the caller has just seen it
            # accept, so trust that; after a restart there is no other way.
            if first:
                return
            deadline = time.monotonic() + timeout
            while not (udp_probe(self._addr, 0.4) is None if self.udp else can_connect(self._addr, 0.2)):
                if self._state().get("Status") not in _ALIVE:
                    raise de.ServerDied(f"{self.container} ended before listening") from None
                if time.monotonic() > deadline:
                    raise HarnessError(f"nothing accepts connections at {self.name} "
                                       f"({timeout:.0f}s after restarting {self.container})") from None
                time.sleep(0.02)
        except de.ServerDied:
            raise
        except de.DockerEnvError as e:
            raise HarnessError(str(e).splitlines()[0]) from None

    def stop(self) -> None:
        pass  # the container belongs to whoever started it

    def describe(self) -> dict[str, Any]:
        from . import dockerenv as de

        out: dict[str, Any] = {**super().describe(), "kind": "docker", "container": self.container,
                               "restarts": self.restarts, "deaths": [h["reason"] for h in self.history]}
        try:
            ctr = self._container()
        except HarnessError:
            return out
        prof = de.ENV_PROFILES.get(((ctr.attrs.get("Config") or {}).get("Labels") or {}).get(de.PROFILE_LABEL, ""))
        out.update({"image": (ctr.attrs.get("Config") or {}).get("Image"), "nofile": self.nofile,
                    "memory": self._mem, "first_start": self.first_start})
        if prof is not None:
            out.update({"env_profile": prof.name, "env_profile_description": prof.description})
        return out

    # -- the environment and faults (docker.* cases) -----------------------------------------
    @property
    def nofile(self) -> int | None:  # type: ignore[override]
        """The descriptor limit the container was started with (--ulimit nofile), or None."""
        for u in (self._container().attrs.get("HostConfig") or {}).get("Ulimits") or []:
            if u.get("Name") == "nofile":
                return int(u.get("Soft") or u.get("Hard"))
        return None

    @property
    def address(self) -> str:
        return self._addr[0]

    @property
    def port(self) -> int:
        return self._addr[1]

    def alive(self) -> bool:
        """Running, or paused (frozen, not dead)."""
        return self._state().get("Status") in ("running", "paused")

    def exit_reason(self) -> str | None:
        """None while alive; else "OOM-killed", "exited 139 (SIGSEGV)", "exited 0", ..."""
        from . import dockerenv as de

        return None if self.alive() else de.exit_reason(self._state(), self._mem)

    def pause(self) -> None:
        """Freeze every process of the server (cgroup freezer); its kernel sockets stay."""
        self._forget_state()
        self._container().pause()

    def unpause(self) -> None:
        self._forget_state()
        self._container().unpause()

    def _network(self) -> tuple[Any, dict[str, str]]:
        """The network of the namespace holder and its addresses there (the lab gives it one)."""
        self._container()
        if self._holder is None:
            raise HarnessError(f"container {self.container} has no network-namespace holder to cut off")
        self._holder.reload()
        nets = (self._holder.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        if len(nets) != 1:
            raise HarnessError(f"the holder of {self.container} is on {len(nets)} networks, not one")
        name, settings = next(iter(nets.items()))
        kw = {"ipv4_address": settings.get("IPAddress")}
        if settings.get("GlobalIPv6Address"):
            kw["ipv6_address"] = settings["GlobalIPv6Address"]
        return self._holder.client.networks.get(name), kw

    def disconnect(self) -> None:
        """Cut the server off the network: its interface goes; the process and sockets stay."""
        net, kw = self._network()
        self._net = (net.name, kw)
        net.disconnect(self._holder, force=True)

    def reconnect(self) -> None:
        """Back on the network with the same address(es)."""
        if self._net is None:
            return
        name, kw = self._net
        self._holder.client.networks.get(name).connect(self._holder, **kw)
        self._net = None

    def kill_and_restart(self, timeout: float = RESTART_TIMEOUT) -> tuple[float, float]:
        """SIGKILL the server and start it again in the same network namespace (same address and
        port, its old connections' sockets still there); not a death of the server's own. Returns
        the seconds the engine took to kill it and start it again, and the seconds from then until
        it listened again: only the latter is the server's doing. dockerenv.ServerDied when it
        ends before listening, dockerenv.DockerEnvError when it does not listen in time."""
        from . import dockerenv as de

        start = time.monotonic()
        ctr = self._container()
        self._forget_state()
        ctr.kill(signal="SIGKILL")
        ctr.wait(timeout=int(timeout) + 1)
        ctr.start()
        started = time.monotonic()
        try:
            self._wait_listening(timeout)
        except HarnessError as e:
            raise de.DockerEnvError(str(e)) from None
        return started - start, time.monotonic() - started


def _seen_here(pid: int, container_id: str) -> str | None:
    """Why this host cannot see the processes of the container whose first process Docker
    calls `pid`, or None when it can: the number must be that container's here (its cgroup
    names it; in another PID namespace the same number is another process) and readable."""
    from . import dockerenv as de

    if not de.pid_is_here(pid, container_id):
        return "the harness runs in another PID namespace than the Docker engine"
    if not os.access(f"/proc/{pid}/fd", os.R_OK):
        return "reading their descriptors needs root"
    return None


def _epoch(stamp: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds ("2025-01-02T03:04:05.123456789Z") as seconds since
    the epoch, a little early (logs from then on include the run's first line); None if unreadable."""
    import datetime
    import re

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", stamp or "")
    if not m or m.group(1).startswith("0001"):
        return None
    t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
    return t + float(f"0.{m.group(2) or 0}") - 0.001
