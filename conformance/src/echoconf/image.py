"""`echoconf run --image IMAGE`: the suite against a server image, in Docker, under hostile
environment profiles.

For each profile named (`--env-profile`, default `default`) the image is started on an internal
Docker network by `dockerenv.Lab` (no outside connectivity; the profile's sysctls, limits and
IPv6), the suite runs against it through the `--target` path in a child harness process that
also watches the container (`--echoconf-container`, `container.ContainerTarget`: a death fails the
case it happened in, with how it died, and the container is restarted for the next cases), and
then the Docker-level checks run: whether the server container stayed alive (`docker.alive`, with
the exit reason when it did not: OOM-killed, a signal, an exit status; deaths during the suite
count even though the container was restarted), the
descriptor-exhaustion check under a descriptor limit (`docker.nofile-exhaustion`) and, with
`--faults`, the pause/network-cut/kill checks. Their results join the harness's report.

Every per-case line is prefixed with the profile name; `--report DIR` gets one folder per profile
(`DIR/<profile>/report.json`, `junit.xml`, `report.md`, `server.log`) and `DIR/summary.json`;
each report.json carries `environment.profile` and `environment.docker`.

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
import socket
import subprocess
import sys
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

PKG = Path(__file__).resolve().parent
BAD = ("failed", "error", "xpassed")
FAMILIES = ("echo", "partial", "close", "robust", "state", "docker")

# The suite's case that a descriptor limit makes meaningless rather than failed: its 64 or more
# clients need as many descriptors in the server process, on top of the listener and stdio. Whether it passes
# under RLIMIT_NOFILE 64 says how the server is built (one process per client passes, one process
# for all cannot), not whether it is correct; so under such a limit it is left out, reported as
# skipped with this reason, and docker.nofile-exhaustion judges what matters instead.
NOFILE_CASE = ("echo.concurrent", "echo::echo.concurrent", 64)  # case id, pytest node id, clients

Line = Callable[[str], None]

# The hang bound of an --image run unless --hang-bound says otherwise (0: none). A server in a
# container that stops answering would otherwise hold each case to its full deadline (two
# hanging images took 145 s); a correct server is never silent this long on a stream the
# client is reading (a client holding back its reads on purpose is not counted).
IMAGE_HANG_BOUND = 5.0


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
# Docker-level checks whose results join the report


def check_nofile_exhaustion(address: str, port: int, limit: int, extra: int = 24,
                            deadline: float = 8.0) -> tuple[str, str]:
    """More clients than the server's descriptor limit, each sending 512 distinct bytes. The
    server must stay alive; every client it serves gets exactly its bytes (a client it cannot
    serve may be closed or wait in the backlog: both are correct answers to EMFILE); the waiting
    ones are served once the others leave; then a new client is served. (outcome, detail)."""
    from . import dockerenv as de

    n = limit + extra
    conns: list[socket.socket] = []
    data = [bytes([(i * 7 + j) % 251 for j in range(512)]) for i in range(n)]
    got: list[bytearray] = [bytearray() for _ in range(n)]
    state = ["pending"] * n  # pending, echoed, closed, wrong
    try:
        for i in range(n):
            try:
                s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(2.0)
                s.connect((address, port))
                s.sendall(data[i])
                s.setblocking(False)
            except OSError:
                state[i] = "closed"  # refused or reset at once: the server shed it
                s.close()
                s = socket.socket()  # placeholder, closed below
            conns.append(s)

        def pump(until: float) -> None:
            while time.monotonic() < until and "pending" in state:
                moved = False
                for i, s in enumerate(conns):
                    if state[i] != "pending":
                        continue
                    try:
                        chunk = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        state[i] = "closed"
                        continue
                    moved = True
                    if not chunk:
                        state[i] = "closed"
                        continue
                    got[i] += chunk
                    if not data[i].startswith(bytes(got[i])):
                        state[i] = "wrong"
                    elif len(got[i]) == len(data[i]):
                        state[i] = "echoed"
                if not moved:
                    time.sleep(0.02)

        pump(time.monotonic() + deadline)
        first = collections.Counter(state)
        wrong = [i for i, st in enumerate(state) if st == "wrong"]
        if wrong:
            return "failed", f"client {wrong[0]} of {n} got bytes that are not its own (under RLIMIT_NOFILE {limit})"
        # The served ones leave: whoever waits in the backlog must now be served.
        for i, st in enumerate(state):
            if st != "pending":
                conns[i].close()
        pending_before = first["pending"]
        if pending_before:
            pump(time.monotonic() + deadline)
        still = [i for i, st in enumerate(state) if st == "pending"]
        summary = (f"{n} clients against RLIMIT_NOFILE {limit}: {first['echoed']} echoed at once, "
                   f"{first['closed']} closed by the server, {pending_before} waited")
        if still:
            return "failed", (f"{summary}; {len(still)} of them still not served {deadline:.0f} s after the "
                              "others left (a descriptor leaked, or the server stopped accepting)")
        if state.count("wrong"):
            return "failed", f"{summary}; a waiting client got bytes that are not its own"
        if first["echoed"] == 0:
            return "failed", f"{summary}; none was served while the limit was reached"
    finally:
        for s in conns:
            s.close()
    why = None
    for _ in range(3):  # bounded: the server may still be closing the crowd
        why = de.probe(address, port, timeout=2.0)
        if why is None:
            break
    if why is not None:
        return "failed", f"{summary}; afterwards a new client was not served: {why}"
    return "passed", f"{summary}; then a new client was served"


def _alive_verdict(srv: Any, alive: bool, doc: dict[str, Any] | None) -> tuple[str, str | None]:
    """(server_state, docker.alive's failure message or None). Deaths during the suite count even
    though the child harness restarted the container after each: they come from its report
    (`target.deaths`, and the cases charged with them) and, should it have said nothing, from
    Docker (the container was started again since it first became ready)."""
    deaths = list(((doc or {}).get("target") or {}).get("deaths") or [])
    charged = [c["id"] for c in (doc or {}).get("cases", [])
               if isinstance(c.get("detail"), dict) and c["detail"].get("server_died")]
    at = f" (charged to {', '.join(charged)})" if charged else ""
    if not alive:
        now = srv.exit_reason() or "dead"
        times = "once" if len(deaths) == 1 else f"{len(deaths)} times"
        earlier = f"; it had died {times} before during the suite and been restarted{at}" if deaths else at
        return (now if not deaths else f"{now} (died {len(deaths) + 1}x)"), \
            f"the server container died: {now}{earlier}"
    if deaths:
        first = deaths[0]
        state = f"{first}, restarted" if len(deaths) == 1 else f"died {len(deaths)}x ({first} first), restarted"
        times = "once" if len(deaths) == 1 else f"{len(deaths)} times"
        return state, (f"the server container died {times} during the suite (restarted after "
                       f"{'it' if len(deaths) == 1 else 'each death'}): "
                       f"{', '.join(deaths)}{at}")
    if srv.restarted():
        return "restarted during the suite", ("the server container was started again during the suite "
                                              "(it had died; the harness's report does not say how)")
    return "alive", None


def _case(cid: str, outcome: str, message: str, requirement: str, duration: float = 0.0) -> dict[str, Any]:
    # Every Docker-level check is a MUST: a dead, stalled or unreachable server fails every client.
    return {"id": cid, "level": "docker", "requirement": requirement, "fm": [], "grade": "must",
            "why": "a server that dies, or stops serving, fails every client",
            "outcome": outcome, "duration": round(duration, 3),
            "detail": {"message": message} if message else None}


def _add_to_junit(path: Path, cases: list[dict[str, Any]]) -> None:
    """Append the Docker-level results to pytest's junit.xml so CI sees them too."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return
    root = tree.getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return
    for c in cases:
        tc = ET.SubElement(suite, "testcase", classname="docker", name=c["id"], time=f"{c['duration']:.3f}")
        msg = (c.get("detail") or {}).get("message", "")
        if c["outcome"] in ("failed", "xpassed"):
            ET.SubElement(tc, "failure", message=msg[:500]).text = msg
        elif c["outcome"] == "error":
            ET.SubElement(tc, "error", message=msg[:500]).text = msg
        elif c["outcome"] == "skipped":
            ET.SubElement(tc, "skipped", message=msg[:500])
        key = {"failed": "failures", "xpassed": "failures", "error": "errors", "skipped": "skipped"}.get(c["outcome"])
        suite.set("tests", str(int(suite.get("tests", "0")) + 1))
        if key:
            suite.set(key, str(int(suite.get(key, "0")) + 1))
    tree.write(path, encoding="utf-8", xml_declaration=True)


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
    timeout: float = 900.0, ready_timeout: float = 15.0, pytest_args: Sequence[str] = (),
) -> ProfileResult:
    """Start `image` under the profile in `lab`, run the suite against it (a child harness; each
    output line goes to `line`, prefixed with the profile, and to out/harness.log), then the
    Docker-level checks; write the reports to `out`. Never raises for the server's behaviour."""
    from . import dockerenv as de
    from . import report as rep

    prof = de.env_profile(profile_name)
    res = ProfileResult(prof.name, out=out)
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    try:
        srv = lab.start_server(image, command, port, prof, name=name, ready_timeout=ready_timeout)
    except de.DockerEnvError as e:
        first = str(e).splitlines()[0]
        res.status, res.note = 2, f"server never ready: {first}"
        res.server_state = "never listened"
        (out / "server.log").write_text("\n".join(str(e).splitlines()[1:]) + "\n")
        res.doc = {"version": rep.VERSION, "implementation": None, "cases": [],
                   "target": {"kind": "docker", "image": image, "profile": prof.name},
                   "environment": {"profile": prof.name, "docker": {"profile": prof.name,
                                   "profile_description": prof.description, "server_state": res.server_state}},
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
    pytest_args = ["--echoconf-container", srv.name, "--echoconf-replay-as", replay_as, *pytest_args]
    dropped: list[dict[str, Any]] = []
    if prof.nofile and prof.nofile <= NOFILE_CASE[2] and "concurrent" not in without:
        pytest_args += ["--deselect", NOFILE_CASE[1]]
        dropped.append(_case(NOFILE_CASE[0], "skipped",
                             f"left out under RLIMIT_NOFILE {prof.nofile} (profile {prof.name}): its 64 or more "
                             "clients need more descriptors than a one-process server is allowed, so the outcome would "
                             "tell the server's architecture, not its correctness; docker.nofile-exhaustion "
                             "judges the server under the limit instead", "concurrent clients with distinct data (see "
                             "echo.concurrent)"))
    argv = harness_argv(srv.target, out, suite_profile, extra, pytest_args)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PKG.parent), *filter(None, [os.environ.get("PYTHONPATH")])]),
               COLUMNS="160", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_ADDOPTS", None)
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
                proc.kill()
                proc.wait()
                res.note = f"harness did not finish within {timeout:.0f}s"
        except BaseException:
            proc.kill()
            proc.wait()
            srv.stop()
            raise
    try:
        doc = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as e:
        doc = None
        res.note = res.note or f"harness exit {rc}, no report.json ({e}); see {out / 'harness.log'}"
        rc = 2
    added: list[dict[str, Any]] = list(dropped)
    t0 = time.monotonic()
    alive = srv.alive()
    state, verdict = _alive_verdict(srv, alive, doc)
    res.server_state = state
    added.append(_case("docker.alive", "passed" if verdict is None else "failed",
                       "still running after the suite, never died" if verdict is None else verdict,
                       "the server container stays up through the suite (never OOM-killed, killed by "
                       "a signal or exited, even if restarted after it)", time.monotonic() - t0))
    if alive and prof.nofile and "concurrent" not in without:
        t0 = time.monotonic()
        outcome, detail = check_nofile_exhaustion(srv.address, srv.port, prof.nofile)
        added.append(_case("docker.nofile-exhaustion", outcome, detail,
                           "more clients than the descriptor limit: the server stays alive, serves whom it "
                           "can exactly, sheds or queues the rest, and serves again afterwards",
                           time.monotonic() - t0))
        if not srv.alive():
            res.server_state = srv.exit_reason() or "dead"
    if faults and srv.alive():
        from .faults import fault_checks

        for r in fault_checks(srv):
            added.append(_case(r.id, r.outcome, r.detail, r.requirement, r.duration))
            if not srv.alive():
                res.server_state = srv.exit_reason() or "dead"
                break
    logs = srv.logs()
    reason = srv.stop()
    (out / "server.log").write_text(logs)
    if res.server_state == "alive" and reason not in (None, "exited 0"):
        res.server_state = f"on SIGTERM: {reason}"
    docker_env = {**srv.describe(), "server_state": res.server_state}
    if doc is not None:
        doc["cases"].extend(added)
        doc.setdefault("environment", {})["profile"] = prof.name
        doc["environment"]["docker"] = docker_env
        doc["target"] = {**(doc.get("target") or {}), "kind": "docker", "image": image,
                         "container": srv.name, "profile": prof.name}
        s = doc["summary"]
        counts = collections.Counter(c["outcome"] for c in doc["cases"])
        s.update({"total": len(doc["cases"]), **{o: counts.get(o, 0) for o in rep.OUTCOMES}})
        if "must_failed" in s:
            s["must_failed"] = sum(1 for c in doc["cases"] if c["outcome"] in BAD and c.get("grade", "must") == "must")
            s["conformant"] = not s["must_failed"] and not s.get("harness_errors")
        status = rc if rc in (0, 1, 2) else 2
        if status != 2 and any(c["outcome"] in BAD for c in added):
            status = 1
        s["exit_status"] = status
        if res.note:
            s.setdefault("harness_errors", []).append(res.note)
        (out / "report.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        md = rep.markdown(doc).split("\n", 2)
        md[0] = f"# echoconf report: image {image} under environment profile {prof.name}"
        md.insert(2, f"Environment profile `{prof.name}` ({prof.description}); image `{image}`, container "
                     f"`{srv.name}` at `{srv.target}`; server after the run: {res.server_state}. "
                     "(`Profile` below is the suite's depth.)\n")
        (out / "report.md").write_text("\n".join(md))
        _add_to_junit(out / "junit.xml", added)
        res.status = status
    else:
        res.status = 2
        res.doc = None
    res.doc = doc
    res.tally()
    res.duration = time.monotonic() - start
    if line:
        for c in added:
            d = (c.get("detail") or {}).get("message", "")
            line(f"[{prof.name}] {c['outcome']:8} {c['id']:28} {c['duration']:6.2f}s  {d if c['outcome'] != 'passed' else ''}".rstrip())
        if res.server_state != "alive":
            line(f"[{prof.name}] server container: {res.server_state}")
    return res


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
        with de.Lab(holder_image=holder, log=_stderr) as lab:
            for name in profiles:
                results.append(run_profile(
                    lab, args.image, command, args.port, name, base / name, suite_profile=args.profile,
                    harness_args=extra, without=args.without, faults=args.faults, line=line,
                    name=args.image.split("/")[-1].split(":")[0], pytest_args=args.pytest_args))
    except KeyboardInterrupt:
        print("echoconf: interrupted; containers and network removed", file=sys.stderr)
        return 2
    except de.DockerEnvError as e:
        print(f"echoconf: {e}", file=sys.stderr)
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
