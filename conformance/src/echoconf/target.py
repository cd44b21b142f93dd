"""The server under test: an address we only connect to, or a process we own.

An owned server is started from an argv template (`{port}` substituted), its stdout
and stderr are captured by reader threads, its death is noticed and described
("killed by SIGPIPE (signal 13)"), and it is restarted on the same port when it died.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import listeners, proctree
from .client import Addr, SocketFactory, WorkMeter, can_connect, literal_family, resolve

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0
LISTENING = re.compile(listeners.ANNOUNCEMENT.encode())


class HarnessError(RuntimeError):
    """The harness could not do its job (server never ready, ...): exit status 2."""


def free_port(host: str = "127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def describe_status(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (signal {-code})"
    if code > 128 and code - 128 < 65:
        try:
            return f"exited with status {code} (a shell reporting {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exited with status {code}"


class _Tail:
    """Keeps the last `limit` bytes of a stream (and the total seen)."""

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.buf: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.total = 0
        self.limit = limit
        self.lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self.lock:
            self.buf.append(data)
            self.size += len(data)
            self.total += len(data)
            while self.size > self.limit and len(self.buf) > 1:
                self.size -= len(self.buf.popleft())

    def text(self, last: int | None = None) -> str:
        with self.lock:
            data = b"".join(self.buf)
        if last is not None:
            data = data[-last:]
        return data.decode("utf-8", "replace")


@dataclass
class ServerSpec:
    """How to start a server: argv with `{port}`; builtins announce `listening ADDR PORT`."""

    argv: list[str]
    announces: bool = False  # prints `listening ADDR PORT`, so port 0 can be used
    host: str = "127.0.0.1"
    label: str = ""
    tcp: bool = True  # serves TCP (ready once it listens); False: UDP only (ready once bound)

    @classmethod
    def from_command(cls, command: str, host: str = "127.0.0.1") -> "ServerSpec":
        argv = shlex.split(command)
        if not any("{port}" in a for a in argv):
            raise HarnessError("--command needs a {port} placeholder, e.g. \"./server --port {port}\"")
        return cls(argv, announces=False, host=host, label=command)

    @classmethod
    def from_builtin(cls, binary: str, host: str = "127.0.0.1") -> "ServerSpec":
        return cls([binary, "--host", host, "--port", "{port}"], announces=True, host=host,
                   label=os.path.basename(binary))

    def with_host(self, host: str) -> "ServerSpec":
        if not self.announces:
            return ServerSpec(list(self.argv), self.announces, host, self.label, self.tcp)
        argv = list(self.argv)
        if "--host" in argv:
            argv[argv.index("--host") + 1] = host
        return ServerSpec(argv, True, host, self.label, self.tcp)


@dataclass
class Instance:
    """One run of the server process."""

    proc: subprocess.Popen[bytes]
    port: int
    addr: Addr
    started: float
    stdout: _Tail = field(default_factory=_Tail)
    stderr: _Tail = field(default_factory=_Tail)
    # Its processes: its own and all it forked (a cgroup of its own, or its session).
    tree: proctree.Tree = field(default_factory=proctree.Tree)
    # What it had started and was still running when it was ended (killed then): command lines.
    left_behind: list[str] = field(default_factory=list)


class Target:
    """Base: something with an address."""

    owned = False  # the harness starts this server: it can start private instances too
    observable = False  # the harness sees the server's processes (`pid`, /proc of this host)
    reports_death = False  # `death` can tell that the server died (the harness runs it)
    nofile: int | None = None  # a descriptor limit the harness's environment put on the server
    name = ""

    @property
    def addr(self) -> Addr:
        raise NotImplementedError

    def factory(self) -> SocketFactory | None:
        return None

    def ensure_running(self) -> None:
        pass

    def death(self, grace: float = 0.0) -> str | None:
        return None

    @property
    def pid(self) -> int:
        """The server's main process, as this host sees it (observable targets)."""
        raise HarnessError(f"the processes of {self.name or 'the server'} cannot be seen from here")

    @property
    def session(self) -> int:
        """The session the server's processes are in: a server started in a session of its own
        leads it."""
        return self.pid

    def tree_pids(self) -> list[int]:
        """Every live process of the server: its own and all it forked, also those reparented
        (observable targets)."""
        return proctree.session_pids(self.session)

    def work_meter(self, *, waiting_only: bool = False) -> WorkMeter | None:
        """Seconds that the server's processes (`tree_pids`) were runnable since the previous
        call; None when they cannot be seen. For client.probe: a busy server is slow, an idle
        one stuck. waiting_only: the seconds they waited for a CPU (client.fill_until_stall: a
        server that had no turn has not stopped reading)."""
        if not self.observable:
            return None
        try:
            self.tree_pids()
        except HarnessError:
            return None

        def measure() -> dict[str, int]:
            try:
                pids = self.tree_pids()
            except HarnessError:
                pids = []  # ended meanwhile: nothing more runs
            return runnable_of(pids, waiting_only=waiting_only)

        last = measure()

        def since() -> float:
            nonlocal last
            now = measure()
            # A thread born since counts from its birth; one that ended meanwhile is lost.
            ns = sum(max(0, v - last.get(k, 0)) for k, v in now.items())
            last = now
            return ns / 1e9

        return since

    def stop(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "target", "address": f"{self.addr[0]}:{self.addr[1]}"}


class RemoteTarget(Target):
    """A server the harness only connects to (`--target HOST:PORT`). A name is resolved once
    to all its addresses and every connection tries them in turn (client.resolve), like
    socket.create_connection; the report lists them (`target.resolved`)."""

    def __init__(self, host: str, port: int, ipv6_target: Addr | None = None) -> None:
        self._addr = (host, port)
        self.name = f"{host}:{port}"
        # `--ipv6-target HOST:PORT`: where robust.ipv6 reaches this server over IPv6.
        self.ipv6_target = ipv6_target
        self.resolved: list[str] | None = None
        self.resolve_error: str | None = None

    @property
    def addr(self) -> Addr:
        return self._addr

    def resolve(self) -> list[str]:
        """The target's addresses, in the order connections try them (HarnessError if a name
        does not resolve)."""
        if self.resolved is None:
            try:
                self.resolved = [sa[0] for _, sa in resolve(self._addr)]
            except OSError as e:
                self.resolve_error = f"cannot resolve {self._addr[0]}: {e}"
                raise HarnessError(self.resolve_error) from e
        return self.resolved

    def is_loopback(self) -> bool:
        """Every address of the target is a loopback address (the harness's own host)."""
        return all(_is_loopback(a) for a in self.resolve())

    def ipv6_addresses(self) -> tuple[list[Addr], str]:
        """Where robust.ipv6 reaches this server over IPv6, or ([], why it cannot know).
        --ipv6-target wins; a loopback target is tested at [::1] (as always); an IPv6 literal
        is itself; a name gives its IPv6 addresses; an IPv4 literal says nothing of its
        host's IPv6 address."""
        if self.ipv6_target is not None:
            host, port = self.ipv6_target
            try:
                found = resolve(self.ipv6_target)
            except OSError as e:
                return [], f"--ipv6-target {host} does not resolve: {e}"
            return ([(sa[0], port) for fam, sa in found if fam == socket.AF_INET6],
                    f"--ipv6-target {host} has no IPv6 address")
        host, port = self._addr
        fam = literal_family(host)
        if fam == socket.AF_INET6:
            return [(host, port)], ""
        if self.is_loopback():
            return [("::1", port)], ""
        if fam == socket.AF_INET:
            return [], (f"the target is the IPv4 address {host}: the case cannot know that host's "
                        "IPv6 address; name it with --ipv6-target [ADDR]:PORT (or give --target a "
                        "host name)")
        v6 = [(sa[0], port) for f, sa in resolve(self._addr) if f == socket.AF_INET6]
        return v6, (f"{host} resolves to no IPv6 address ({', '.join(self.resolve())}); name one "
                    "with --ipv6-target [ADDR]:PORT")

    def ensure_running(self) -> None:
        self.resolve()
        if not can_connect(self._addr, 2.0):
            raise HarnessError(f"nothing accepts connections at {self.name}"
                               + (f" ({', '.join(self.resolved or [])})"
                                  if self.resolved != [self._addr[0]] else ""))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["resolved"] = self.resolved
        if self.resolve_error:
            d["resolve_error"] = self.resolve_error
        if self.ipv6_target is not None:
            d["ipv6_target"] = f"[{self.ipv6_target[0]}]:{self.ipv6_target[1]}"
        return d


def _is_loopback(address: str) -> bool:
    import ipaddress

    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class OwnedServer(Target):
    """A server process the harness starts, watches, restarts and stops."""

    owned = True
    observable = True
    reports_death = True

    def __init__(self, spec: ServerSpec, *, wrap: Callable[[list[str]], list[str]] | None = None,
                 factory: SocketFactory | None = None, hold_fds: int = 0,
                 port: int | None = None) -> None:
        self.spec = spec
        self.name = spec.label
        self.wrap = wrap
        self._factory = factory
        self.hold_fds = hold_fds
        self.port = port
        self.inst: Instance | None = None
        self.history: list[dict[str, Any]] = []  # earlier instances: exit, output tails
        self.restarts = 0
        self._trees: list[proctree.Tree] = []  # every instance's process tree, until stop()

    # -- lifecycle -------------------------------------------------------------------
    def start(self, port: int | None = None) -> Instance:
        if port is None:
            port = self.port
        if port is None:
            port = 0 if self.spec.announces else free_port(self.spec.host)
        argv = [a.replace("{port}", str(port)) for a in self.spec.argv]
        if self.hold_fds:
            argv = [sys.executable, "-c", _HOLD_FDS, str(self.hold_fds), *argv]
        if self.wrap:
            argv = self.wrap(argv)
        tree = proctree.new()
        try:
            proc = subprocess.Popen(tree.prefix() + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            tree.close()
            raise HarnessError(f"could not start {argv[0]}: {e}") from e
        tree.started(proc.pid)
        inst = Instance(proc, port, (self.spec.host, port), time.monotonic(), tree=tree)
        self._trees.append(tree)
        ready = threading.Event()
        announced: list[tuple[str, int]] = []

        def pump_stdout() -> None:
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                inst.stdout.add(line)
                m = LISTENING.match(line) if not announced else None
                if m:
                    announced.append((m.group(1).decode(), int(m.group(2))))
                    ready.set()
            ready.set()

        def pump_stderr() -> None:
            assert proc.stderr is not None
            for chunk in iter(lambda: proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
                inst.stderr.add(chunk)

        threading.Thread(target=pump_stdout, daemon=True).start()
        threading.Thread(target=pump_stderr, daemon=True).start()
        self.inst = inst
        deadline = time.monotonic() + READY_TIMEOUT
        if self.spec.announces:
            ready.wait(READY_TIMEOUT)
            if not announced:
                self._fail_start(inst, "never printed `listening ADDR PORT`")
            host, aport = announced[0]
            inst.port = aport
            if host in ("::", "0.0.0.0", "*", ""):
                host = "127.0.0.1"  # a wildcard listener (dual-stack for ::) takes IPv4 loopback
            inst.addr = (host, aport)
        while not self._listening(inst):
            if proc.poll() is not None or time.monotonic() > deadline:
                self._fail_start(inst, ("did not accept connections" if self.spec.tcp else "did not bind its "
                                        "UDP port") + f" within {READY_TIMEOUT:g} s")
            time.sleep(0.02)
        self.port = inst.port
        return inst

    def _listening(self, inst: Instance) -> bool:
        """Whether the server listens at its address, read from the kernel's table of its
        network namespace: readiness never spends a client (see listeners.py). Only where
        the table cannot be read (a host name, /proc unreadable) does a connection tell."""
        socks = listeners.of_pid(inst.proc.pid, udp=not self.spec.tcp) if literal_family(inst.addr[0]) else None
        if socks is None:
            # A UDP-only server cannot be asked without spending a datagram: its bound socket
            # is the only sign, and without the table it counts as ready.
            return can_connect(inst.addr, 0.2, self._factory) if self.spec.tcp else True
        return listeners.accepts_on(socks, inst.addr[0], inst.addr[1])

    def _fail_start(self, inst: Instance, why: str) -> None:
        code = inst.proc.poll()
        if code is None:
            self._kill(inst)
            status = ""
        else:
            status = f"; it {describe_status(code)}"
        tail = inst.stderr.text(1500).strip()
        raise HarnessError(f"the server {why}{status}" + (f"; stderr: {tail}" if tail else ""))

    def ensure_running(self) -> None:
        if self.inst is not None and self.inst.proc.poll() is None:
            return
        if self.inst is not None:
            self._kill(self.inst)  # what the dead server forked must not hold its port
            self._archive(self.inst)
            self.restarts += 1
        try:
            self.start(self.port)
        except HarnessError:
            if self.port in (None, 0):
                raise
            # The old port may still be held (TIME_WAIT without SO_REUSEADDR): take another.
            self.port = None
            self.start()

    def death(self, grace: float = 0.0) -> str | None:
        """If the process has died, say how (waiting up to `grace` for a dying process)."""
        if self.inst is None:
            return None
        try:
            code = self.inst.proc.wait(grace) if grace else self.inst.proc.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return None
        # Let the pump threads collect the last words.
        time.sleep(0.02)
        tail = self.inst.stderr.text(600).strip()
        return f"the server {describe_status(code)}" + (f"; its last stderr: {tail}" if tail else "")

    def alive(self) -> bool:
        return self.inst is not None and self.inst.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (robust.restart-rebind); start() brings it back."""
        if self.inst is not None:
            self.inst.proc.kill()
            self.inst.proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.inst is None:
            return
        inst = self.inst
        if inst.proc.poll() is None:
            inst.tree.signal(signal.SIGTERM)
            try:
                inst.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._kill(inst)
        # An instance killed on purpose (robust.restart-rebind kills only the main process, as
        # a crash would) may have left what it forked running.
        for tree in self._trees:
            if tree is not inst.tree:
                inst.left_behind += tree.end()
            tree.close()
        self._trees = []
        self._archive(inst, stopped=True)
        self.inst = None

    def _kill(self, inst: Instance) -> None:
        """SIGKILL the server's whole process tree: this also ends what it forked (a handler per
        connection) and left running, which the report tells (`left_behind`)."""
        inst.left_behind += inst.tree.end(inst.proc)

    def _archive(self, inst: Instance, stopped: bool = False) -> None:
        code = inst.proc.poll()
        self.history.append({
            "pid": inst.proc.pid, "port": inst.port,
            "exit": None if code is None else describe_status(code),
            "stopped_by_harness": stopped,
            "stdout_tail": inst.stdout.text(4000), "stderr_tail": inst.stderr.text(4000),
            **({"left_behind": inst.left_behind} if inst.left_behind else {}),
        })

    # -- observation -----------------------------------------------------------------
    @property
    def addr(self) -> Addr:
        if self.inst is None:
            raise HarnessError("the server is not running")
        return self.inst.addr

    @property
    def pid(self) -> int:
        if self.inst is None:
            raise HarnessError("the server is not running")
        return self.inst.proc.pid

    def tree_pids(self) -> list[int]:
        if self.inst is None:
            raise HarnessError("the server is not running")
        return self.inst.tree.pids()

    def factory(self) -> SocketFactory | None:
        return self._factory

    def describe(self) -> dict[str, Any]:
        return {"kind": "builtin" if self.spec.announces else "command",
                "command": self.spec.label if not self.spec.announces else shlex.join(self.spec.argv),
                "restarts": self.restarts,
                "address": f"{self.addr[0]}:{self.addr[1]}" if self.inst else None,
                # how its processes were kept together: "cgroup" (none can escape) or "session"
                "process_tree": self.inst.tree.kind if self.inst else None}


# Runs as `python3 -c _HOLD_FDS N argv...`: raise RLIMIT_NOFILE, hold N descriptors open
# (so the server's own sockets land near fd N+3), then exec the server in place (same pid).
_HOLD_FDS = """
import os, resource, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = max(4096, n + 64)
resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
while True:
    fd = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(fd, True)
    if fd >= n + 2:
        break
os.execvp(sys.argv[2], sys.argv[2:])
"""


def proc_stat(pid: int) -> dict[str, float]:
    """CPU seconds (utime+stime), RSS bytes and descriptor count of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return {"cpu": cpu, "rss": rss}


@contextlib.contextmanager
def stopped(pid: int, bound: float = 2.0) -> Iterator[None]:
    """SIGSTOP `pid`, wait until the kernel reports it stopped (at most `bound` seconds), run
    the block, then SIGCONT it. A SIGCONT sent before the stop took effect would cancel the
    stop; waiting a fixed time instead would stop the process for as long as the sender sleeps,
    which on a loaded machine can be long enough to look like an idle client to a server's timer."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        yield  # gone: the caller's liveness check says so
        return
    try:
        end = time.monotonic() + bound
        while time.monotonic() < end:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                break  # gone: the caller's liveness check says so
            if state in ("T", "t", "Z", "X"):
                break
            time.sleep(0.001)
        yield
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def stop_briefly(pid: int, bound: float = 2.0) -> None:
    """SIGSTOP and SIGCONT `pid`, the continue only once the stop took effect (`stopped`)."""
    with stopped(pid, bound):
        pass


def runnable_ns(pid: int, *, waiting_only: bool = False) -> dict[str, int]:
    """Per thread of a process: nanoseconds on a CPU plus nanoseconds waiting in a run queue
    (waiting_only: only the latter, the time it wanted a CPU and had none)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return out  # gone, or being reaped (ESRCH): a forked handler that just ended
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                on_cpu, waiting = f.read().split()[:2]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # the thread ended meanwhile
        out[tid] = int(waiting) + (0 if waiting_only else int(on_cpu))
    return out


def thread_start(pid: int, tid: str) -> float | None:
    """When a thread started, in seconds since boot (CLOCK_BOOTTIME); None if it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def runnable_of(pids: list[int], *, waiting_only: bool = False) -> dict[str, int]:
    """runnable_ns of every thread of these processes."""
    out: dict[str, int] = {}
    for pid in pids:
        out.update(runnable_ns(pid, waiting_only=waiting_only))
    return out


def session_runnable_ns(sid: int, *, waiting_only: bool = False) -> dict[str, int]:
    """runnable_ns of every thread of every process in session `sid`."""
    return runnable_of(proctree.session_pids(sid), waiting_only=waiting_only)


def lower_nofile(pid: int, limit: int) -> None:
    """Set RLIMIT_NOFILE of process `pid` to `limit` (soft and hard). prlimit(2) on another
    process needs the same user and group ids or CAP_SYS_RESOURCE; a harness without that
    capability (a container's root, some sandboxes' root) lowering the limit of a server that
    runs as another user (an image with USER 10001) does it from a helper with the server's
    ids. HarnessError when neither can."""
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        return
    except PermissionError as e:
        first = e
    try:
        with open(f"/proc/{pid}/status") as f:
            ids = {k: v.split() for k, _, v in (line.partition(":") for line in f) if k in ("Uid", "Gid")}
        uid, gid = int(ids["Uid"][0]), int(ids["Gid"][0])
    except (OSError, KeyError, ValueError, IndexError) as e:
        raise HarnessError(f"cannot lower the descriptor limit of pid {pid}: {first}; its ids: {e}") from None
    # util-linux's prlimit(1) when present: a Python helper costs half a CPU-second to start.
    tool = shutil.which("prlimit")
    helper = ([tool, f"--pid={pid}", f"--nofile={limit}:{limit}"] if tool else
              [sys.executable, "-c", "import resource, sys; n = int(sys.argv[2]); "
               "resource.prlimit(int(sys.argv[1]), resource.RLIMIT_NOFILE, (n, n))", str(pid), str(limit)])
    try:
        res = subprocess.run(helper, user=uid, group=gid, extra_groups=[], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        raise HarnessError(f"cannot lower the descriptor limit of pid {pid}: {first}; as uid {uid}: {e}") from None
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        raise HarnessError(f"cannot lower the descriptor limit of pid {pid}: {first}; as uid {uid}: {tail[0]}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def descriptors_exhausted(target: Target) -> str | None:
    """How the server stands at its descriptor limit, when it has (nearly) reached it: the
    reason it can accept no one. None when it has room, or when it cannot be seen."""
    if not target.observable:
        return None
    try:
        pid = target.pid
        soft, _ = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        held = fd_count(pid)
    except (HarnessError, OSError):
        return None
    if soft == resource.RLIM_INFINITY or held < soft - 2:
        return None
    return f"it held {held} descriptors, its whole limit (RLIMIT_NOFILE {soft})"
