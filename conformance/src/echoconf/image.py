"""`echoconf run --image IMAGE`: the suite against a server image, in Docker, under hostile
environment profiles.

For each profile named (`--env-profile`, default `default`) the image is started on an internal
Docker network by `lab.Lab` (no outside connectivity; the profile's sysctls, limits and
IPv6), and the suite runs against it in a child harness process through the `--target` path
with `--echoconf-container`: the child's `container.DockerTarget` watches the container (a
death fails the case it happened in, with how it died, and the container is restarted for the
next cases), starts private containers of the image for the cases that need them, and runs the
docker.* cases last (cases/test_docker.py: docker.alive, docker.nofile-exhaustion under a
descriptor limit and, with `--faults`, the pause, network-cut and kill cases). The child writes
the reports; this module only starts the container, relays the output and sums up.

Every per-case line is prefixed with the profile name; `--report DIR` gets one folder per profile
(`DIR/<profile>/report.json`, `junit.xml`, `report.md`, `server.log`, `harness.log`) and
`DIR/summary.json`; each report.json's `target` names the image, container and environment
profile.

Exit status like the harness: 0 all passed, 1 a case failed (in any profile; a server that dies is
a failed case), 2 no engine, image not found, server never ready at its first start, or a harness
error.

`docker/matrix.py` runs its cells through `run_profile` too, so both paths judge alike.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import subprocess
import sys
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import report
from .caselib import FAMILIES

PKG = Path(__file__).resolve().parent
BAD = report.BAD

Line = Callable[[str], None]

# The hang bound of an --image run unless --hang-bound says otherwise (0: none). A server in a
# container that stops answering would otherwise hold each case to its full deadline (two
# hanging images took 145 s); a correct server is never silent this long on a stream the
# client is reading (a client holding back its reads on purpose is not counted).
IMAGE_HANG_BOUND = 5.0
# How long an interrupted child harness may take to stop its private containers: one may be
# starting (up to its 15 s readiness bound) when the interruption comes.
CHILD_GRACE = 30.0


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class ProfileResult:
    profile: str
    status: int = 2
    doc: dict[str, Any] | None = None
    server_state: str = "alive"
    note: str = ""
    out: Path | None = None
    duration: float = 0.0
    families: dict[str, collections.Counter[str]] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (case id, outcome, message)

    def tally(self) -> None:
        self.families, self.failures = {}, []
        for c in (self.doc or {}).get("cases", []):
            fam = c["id"].split(".", 1)[0]
            self.families.setdefault(fam, collections.Counter())[c["outcome"]] += 1
            if c["outcome"] in BAD:
                d = c.get("detail") or {}
                msg = d.get("message", "") if isinstance(d, dict) else str(d)
                self.failures.append((c["id"], c["outcome"], msg))


# --------------------------------------------------------------------------------------------
# One profile


def harness_argv(target: str, out: Path, suite_profile: str, extra: Sequence[str] = (),
                 pytest_args: Sequence[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "echoconf", "run", "--target", target, "--report", str(out),
            "--profile", suite_profile, *extra]
    return argv + (["--", *pytest_args] if pytest_args else [])


def run_profile(
    lab: Any, image: str, command: Sequence[str] | None, port: int, profile_name: str, out: Path, *,
    suite_profile: str = "default", harness_args: Sequence[str] = (), without: Sequence[str] = (),
    faults: bool = False, name: str | None = None, line: Line | None = None, log: Line = _stderr,
    timeout: float = 900.0, ready_timeout: float = 15.0, pytest_args: Sequence[str] = (), udp: bool = False,
) -> ProfileResult:
    """Start `image` under the profile in `lab`, run the suite against it (a child harness; each
    output line goes to `line`, prefixed with the profile, and to out/harness.log); the child
    writes the reports to `out`. Never raises for the server's behaviour. `udp`: the image serves
    UDP alone (`--transport udp` among `harness_args`)."""
    from . import dockerenv as de
    from . import report as rep

    prof = de.env_profile(profile_name)
    res = ProfileResult(prof.name, out=out)
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    try:
        # Without fault cases nothing cuts the server's network: where its command can be told
        # a port, it joins a namespace that the lab's other runs share, a container start fewer.
        # Their servers then share an address; the UDP client takes answers only from the port
        # it asked (udpclient.Exchange), never another run's late one.
        share = not faults and command is not None and any("{port}" in part for part in command)
        srv = lab.start_server(image, command, port, prof, name=name, ready_timeout=ready_timeout, udp=udp,
                               shared_namespace=share)
    except de.DockerEnvError as e:
        first = str(e).splitlines()[0]
        res.status, res.note = 2, f"server never ready: {first}"
        res.server_state = "never listened"
        (out / "server.log").write_text("\n".join(str(e).splitlines()[1:]) + "\n")
        # No harness ran: the report says why, in the shape the harness's reports have.
        res.doc = {"version": rep.VERSION, "implementation": None, "cases": [],
                   "target": {"kind": "docker", "image": image, "env_profile": prof.name,
                              "env_profile_description": prof.description, "state": res.server_state},
                   "environment": rep.environment(),
                   "summary": {"total": 0, "exit_status": 2, "harness_errors": [res.note]}}
        (out / "report.json").write_text(json.dumps(res.doc, indent=2) + "\n")
        res.duration = time.monotonic() - start
        if line:
            line(f"[{prof.name}] error: {res.note}")
        return res
    log(f"[{prof.name}] {image} listening at {srv.target} ({srv.name})")
    extra = list(harness_args)
    for cap in without:
        extra += ["--without", cap]
    # The child harness watches the container: a death fails the case it happened in (exit
    # status, signal, OOM kill, output tail) and the container is restarted for the next cases.
    replay_as = f"--image {image} --port {port} --env-profile {prof.name}"
    if command:
        replay_as += f" --command-in-image {shlex.quote(' '.join(command))}"
    if faults:
        replay_as += " --faults"
    pytest_args = ["--echoconf-container", srv.name, "--echoconf-replay-as", replay_as,
                   *(["--echoconf-first-start", f"{srv.first_start:.3f}"] if srv.first_start else []),
                   *(["--echoconf-faults"] if faults else []), *pytest_args]
    argv = harness_argv(srv.target, out, suite_profile, extra, pytest_args)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PKG.parent), *filter(None, [os.environ.get("PYTHONPATH")])]),
               COLUMNS="160", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_ADDOPTS", None)
    # The Docker SDK imports distutils: through setuptools' shim, which imports setuptools, that
    # is a fifth of the child's start. python3-docker depends on python3-distutils.
    env.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
    rc = 2
    with open(out / "harness.log", "w") as hlog:
        hlog.write("$ " + " ".join(shlex.quote(a) for a in argv[1:]) + "\n")
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, text=True, errors="replace")
        except OSError as e:
            res.status, res.note = 2, f"cannot start the harness: {e}"
            srv.stop()
            return res
        _CHILDREN.add(proc)
        assert proc.stdout is not None
        end = time.monotonic() + timeout
        try:
            for text in proc.stdout:
                hlog.write(text)
                if line:
                    line(f"[{prof.name}] {text.rstrip()}")
                if time.monotonic() > end:
                    break
            try:
                rc = proc.wait(timeout=max(1.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _end(proc)
                res.note = f"harness did not finish within {timeout:.0f}s"
        except BaseException:
            _end(proc)
            srv.stop()
            raise
        finally:
            _CHILDREN.discard(proc)
    try:
        res.doc = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as e:
        res.note = res.note or f"harness exit {rc}, no report.json ({e}); see {out / 'harness.log'}"
    res.server_state = _server_state(srv, res.doc)
    (out / "server.log").write_text(srv.logs())
    reason = srv.stop()
    if res.server_state == "alive" and reason not in (None, "exited 0"):
        res.server_state = f"on SIGTERM: {reason}"
    res.status = rc if rc in (0, 1) and res.doc is not None and not res.note else 2
    res.tally()
    res.duration = time.monotonic() - start
    if line and res.server_state != "alive":
        line(f"[{prof.name}] server container: {res.server_state}")
    return res


_CHILDREN: set[subprocess.Popen[str]] = set()  # the child harnesses running now, in any thread


def interrupt_children() -> None:
    """Interrupt every child harness running now (SIGTERM, as Ctrl-C would): the threads that
    wait for them then end their cells, and each child removes what it made. For a process that
    runs several cells at once (docker/matrix.py) and is itself interrupted."""
    for proc in list(_CHILDREN):
        if proc.poll() is None:
            proc.terminate()


def _end(proc: subprocess.Popen[str], grace: float = CHILD_GRACE) -> None:
    """End the child harness as Ctrl-C would: SIGTERM, which it turns into an interrupted
    session that stops its private containers and removes their network; SIGKILL only when
    it has not ended within `grace` seconds (or this process is interrupted again)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass
    proc.kill()
    proc.wait()


def _server_state(srv: Any, doc: dict[str, Any] | None) -> str:
    """The container after the suite, for the summary: "alive", how it died, or how often it
    died and was restarted (the deaths the child harness noted in its report's target)."""
    deaths = list(((doc or {}).get("target") or {}).get("deaths") or [])
    if not srv.alive():
        now = srv.exit_reason() or "dead"
        return now if not deaths else f"{now} (died {len(deaths) + 1}x)"
    if deaths:
        return f"{deaths[0]}, restarted" if len(deaths) == 1 else \
            f"died {len(deaths)}x ({deaths[0]} first), restarted"
    return "alive"


# --------------------------------------------------------------------------------------------
# `echoconf run --image`


def _holder_image(c: Any, de: Any, image: str) -> str | None:
    """The image of the network-namespace holder (it runs `sleep infinity`): Debian's slim image,
    else the echoconf image; both are what docker/base-image and docker/run make."""
    import docker.errors

    for cand in (de.BASE_IMAGE, de.IMAGE):
        try:
            c.images.get(cand)
            return cand
        except docker.errors.ImageNotFound:
            continue
    return None


def summary_lines(image: str, results: list[ProfileResult], base: Path | None) -> list[str]:
    fams = [f for f in FAMILIES if any(f in r.families for r in results)]
    head = f"{'profile':14} " + " ".join(f"{f:>9}" for f in fams) + f"  {'server':24} verdict"
    out = [f"echoconf --image {image}: profiles x case families (passed/run)", head]
    for r in results:
        cells = []
        for f in fams:
            cnt = r.families.get(f)
            if not cnt:
                cells.append(f"{'-':>9}")
                continue
            ran = sum(cnt.values()) - cnt["skipped"]
            ok = cnt["passed"] + cnt["xfailed"]
            cells.append(f"{f'{ok}/{ran}':>9}")
        verdict = ["PASS", "FAIL", "ERROR"][r.status]
        out.append(f"{r.profile:14} " + " ".join(cells) + f"  {r.server_state[:24]:24} {verdict}")
    for r in results:
        for cid, outcome, msg in r.failures:
            out.append(f"[{r.profile}] {outcome} {cid}: {msg.splitlines()[0] if msg else ''}")
        if r.note:
            out.append(f"[{r.profile}] note: {r.note}")
    worst = max((r.status for r in results), default=2)
    out.append(f"exit {worst}" + (f"; reports in {base}" if base else ""))
    return out


def run(args: argparse.Namespace) -> int:
    """Entry point for `echoconf run --image`; returns the exit status."""
    try:
        from . import dockerenv as de
        from .lab import Lab, cleanup_stale
        import docker.errors
    except ImportError as e:
        print(f"echoconf: --image needs the Docker SDK for Python (apt-get install python3-docker): {e}",
              file=sys.stderr)
        return 2
    profiles = list(dict.fromkeys(args.env_profile or ["default"]))
    unknown = [p for p in profiles if p not in de.ENV_PROFILES]
    if unknown:
        print(f"echoconf: unknown --env-profile {', '.join(unknown)} (known: {', '.join(de.ENV_PROFILES)})",
              file=sys.stderr)
        return 2
    try:
        c = de.client()
    except de.DockerEnvError as e:
        print(f"echoconf: no Docker engine: {e}\n(start one with docker/engine, or mount "
              "/var/run/docker.sock into this container)", file=sys.stderr)
        return 2
    try:
        c.images.get(args.image)
    except docker.errors.ImageNotFound:
        print(f"echoconf: image {args.image} not found on this engine (docker build -t {args.image} … "
              "first)", file=sys.stderr)
        return 2
    except docker.errors.APIError as e:
        print(f"echoconf: cannot inspect image {args.image}: {e}", file=sys.stderr)
        return 2
    holder = _holder_image(c, de, args.image)
    if holder is None:
        print(f"echoconf: neither {de.BASE_IMAGE} nor {de.IMAGE} is present (docker/base-image makes the "
              "first)", file=sys.stderr)
        return 2
    try:
        cleanup_stale(log=_stderr)  # what an earlier run killed with SIGKILL left behind
    except docker.errors.DockerException as e:
        print(f"echoconf: cannot list this engine's containers: {e}", file=sys.stderr)
        return 2
    command = shlex.split(args.command_in_image) if args.command_in_image else None
    tmp = None
    if args.report:
        base = Path(args.report)
    else:
        tmp = tempfile.mkdtemp(prefix="echoconf-image-")
        base = Path(tmp)
    base.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    if args.seed is not None:
        extra += ["--seed", str(args.seed)]
    for pat in args.case:
        extra += ["--case", pat]
    for lvl in args.level:
        extra += ["--level", lvl]
    for cap in args.capability:
        extra += ["--capability", cap]
    if args.transport:
        extra += ["--transport", args.transport]
    for x in args.xfail:
        extra += ["--xfail", x]
    if args.pytest_output:
        extra += ["--pytest-output"]
    if args.strict:
        extra += ["--strict"]
    hang = IMAGE_HANG_BOUND if args.hang_bound is None else args.hang_bound
    if hang:
        extra += ["--hang-bound", f"{hang:g}"]
    if args.time_scale is not None:
        extra += ["--time-scale", repr(args.time_scale)]

    def line(text: str) -> None:
        print(text, flush=True)

    results: list[ProfileResult] = []
    import signal

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the lab then removes its containers and network

    signal.signal(signal.SIGTERM, _terminate)
    try:
        with Lab(ipv6=True, holder_image=holder, log=_stderr) as lab:
            for name in profiles:
                results.append(run_profile(
                    lab, args.image, command, args.port, name, base / name, suite_profile=args.profile,
                    harness_args=extra, without=args.without, faults=args.faults, line=line,
                    name=args.image.split("/")[-1].split(":")[0], pytest_args=args.pytest_args,
                    udp=args.transport == "udp"))
    except (KeyboardInterrupt, de.DockerEnvError) as e:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)  # reports nobody asked to keep
        print("echoconf: interrupted; containers and network removed" if isinstance(e, KeyboardInterrupt)
              else f"echoconf: {e}", file=sys.stderr)
        return 2
    worst = max((r.status for r in results), default=2)
    summary = {"version": 1, "image": args.image, "port": args.port, "command": command,
               "suite_profile": args.profile, "exit_status": worst,
               "profiles": {r.profile: {"exit_status": r.status, "server_state": r.server_state, "note": r.note,
                                        "duration": round(r.duration, 2),
                                        "families": {k: dict(v) for k, v in r.families.items()},
                                        "failed": [f[0] for f in r.failures]} for r in results}}
    (base / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for text in summary_lines(args.image, results, None if tmp else base):
        print(text, flush=True)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return worst
