"""`echoconf run --image`: a server image in Docker under hostile profiles.

Needs a reachable Docker engine (docker/engine starts one) and the images docker/run builds
(debian:bookworm-slim, echoconf:latest); skipped, with the reason, when they are not there.
"""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, interrupt_after, load_report, outcomes, run
from test_cli import CATALOGUE


def server_state(base: Path, profile: str) -> str:
    """How the server container was after the run under `profile` (summary.json)."""
    import json

    return json.loads((base / "summary.json").read_text())["profiles"][profile]["server_state"]


def _engine_problem() -> str | None:
    try:
        from echoconf import dockerenv as de
    except ImportError as e:
        return f"the Docker SDK for Python is not installed ({e}); apt-get install python3-docker"
    try:
        c = de.client(timeout=10)
    except de.DockerEnvError as e:
        return f"no Docker engine reachable ({str(e).splitlines()[0]}); docker/engine starts one"
    for img in (de.BASE_IMAGE, de.IMAGE):
        try:
            c.images.get(img)
        except Exception:  # noqa: BLE001 - any lookup failure means: not usable here
            return f"image {img} is missing; docker/run (or docker/base-image and docker build) makes it"
    return None


PROBLEM = _engine_problem()
pytestmark = [pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or ""), pytest.mark.timeout(240)]

SHORT_WRITE = REPO / "docker" / "example" / "broken-short-write"


def test_unknown_image_exits_2() -> None:
    p = run("run", "--image", "echoconf-no-such-image:never")
    assert p.returncode == 2
    assert "not found" in p.stderr


def test_server_that_never_listens_exits_2(tmp_path: Path) -> None:
    p = run("run", "--image", "echoconf:latest", "--command-in-image", "false", "--report", str(tmp_path))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "never ready" in p.stdout
    assert load_report(tmp_path / "default")["target"]["env_profile"] == "default"


def test_reference_server_passes_with_profile_on_every_line(tmp_path: Path) -> None:
    p = run("run", "--image", "echoconf:latest", "--command-in-image", "echo-epoll --port 7",
            "--env-profile", "default", "--env-profile", "low-nofile",
            "--case", "echo.basic", "--case", "close.half-close-eof", "--case", "echo.concurrent",
            "--case", "docker.*", "--report", str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[default] passed   echo.basic" in p.stdout
    assert "[low-nofile] passed   echo.basic" in p.stdout
    for prof in ("default", "low-nofile"):
        doc = load_report(tmp_path / prof)
        assert doc["target"]["env_profile"] == prof
        assert doc["target"]["image"] == "echoconf:latest"
        assert doc["target"]["kind"] == "docker"
        assert outcomes(doc)["docker.alive"] == "passed"
        assert (tmp_path / prof / "junit.xml").exists() and (tmp_path / prof / "report.md").exists()
    low = outcomes(load_report(tmp_path / "low-nofile"))
    # Under the descriptor limit echo.concurrent is left out with its reason; the exhaustion check judges.
    assert low["echo.concurrent"] == "skipped"
    assert low["docker.nofile-exhaustion"] == "passed"
    assert (tmp_path / "summary.json").exists()


@pytest.mark.parametrize(("command", "want"), [
    # One client at a time: the crowd waits in the backlog and is served as each client leaves.
    ("echo-blocking --port 7", "passed"),
    # Leaks a descriptor per client: once at its limit, nobody is ever served again.
    ("broken-fd-leak --port 7", "failed"),
])
def test_nofile_exhaustion_tells_a_backlog_from_a_leak(command: str, want: str, tmp_path: Path) -> None:
    p = run("run", "--image", "echoconf:latest", "--command-in-image", command, "--env-profile", "low-nofile",
            "--case", "docker.nofile-exhaustion", "--report", str(tmp_path))
    assert p.returncode == (0 if want == "passed" else 1), p.stdout + p.stderr
    doc = load_report(tmp_path / "low-nofile")
    assert outcomes(doc)["docker.nofile-exhaustion"] == want, p.stdout
    if want == "failed":
        assert "RLIMIT_NOFILE 64" in p.stdout


def _orphans() -> set[str]:
    """Containers and networks of echoconf labs whose process is gone: what a run left behind."""
    from echoconf.lab import stale

    return {f"{kind} {obj.name}" for kind, obj in stale()}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_image_run_leaves_no_container_or_network(sig: signal.Signals, tmp_path: Path) -> None:
    """Interrupted while its private instances start in the background, `echoconf run --image`
    ends its child harness as Ctrl-C would, and each removes what it made."""
    before = _orphans()
    code, seen, rest = interrupt_after(["run", "--image", "echoconf:latest", "--command-in-image",
                                        "echo-epoll --port 7", "--capability", "ipv6", "--report", str(tmp_path)],
                                       "passed   echo.basic", sig)
    assert code == 2, seen + rest
    assert "interrupted; containers and network removed" in rest
    assert _orphans() - before == set()


def test_oom_killed_server_is_reported_as_such(tmp_path: Path) -> None:
    p = run("run", "--image", "echoconf:latest", "--command-in-image", "broken-unbounded --port 7",
            "--env-profile", "memory", "--case", "robust.bounded-memory", "--case", "docker.alive",
            "--report", str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    doc = load_report(tmp_path / "memory")
    assert server_state(tmp_path, "memory").startswith("OOM-killed")
    assert outcomes(doc)["docker.alive"] == "failed"
    assert "OOM-killed" in p.stdout


@pytest.fixture(scope="module")
def short_write_image() -> str:
    tag = "echoconf-example-short-write:test"
    b = subprocess.run(["docker", "build", "-q", "-t", tag, str(SHORT_WRITE)], capture_output=True, text=True,
                       timeout=600)
    if b.returncode != 0:
        pytest.skip(f"cannot build {SHORT_WRITE}: {b.stderr.strip()[-300:]}")
    return tag


def test_short_write_bug_only_tiny_buffers_expose(short_write_image: str, tmp_path: Path) -> None:
    p = run("run", "--image", short_write_image, "--env-profile", "default", "--env-profile", "tiny-buffers",
            "--case", "partial.slow-reader", "--case", "echo.basic", "--report", str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert outcomes(load_report(tmp_path / "default"))["partial.slow-reader"] == "passed"
    tiny = load_report(tmp_path / "tiny-buffers")
    assert outcomes(tiny)["partial.slow-reader"] == "failed"
    assert "short write" in tiny["cases"][[c["id"] for c in tiny["cases"]].index("partial.slow-reader")][
        "detail"]["message"]
    assert "[tiny-buffers] failed   partial.slow-reader" in p.stdout


# --------------------------------------------------------------------------------------------
# A server that dies is a failed case (exit 1), never a harness error (exit 2): the death is
# told (exit status, signal, output), charged to the case, the container restarted, the run
# goes on. Two tiny static servers FROM scratch (conformance/tests/servers/dying/), compiled here.

DYING = Path(__file__).resolve().parent / "servers" / "dying"


def _static_image(ctx: Path, tag: str, gcc_args: list[str], dockerfile: str) -> str:
    """A static C server (`gcc -static … gcc_args`) in an image FROM scratch; the test is skipped
    with the reason when gcc, libc6-dev or the engine cannot build it."""
    cc = subprocess.run(["gcc", "-static", "-O2", "-pthread", "-o", str(ctx / "server"), *gcc_args],
                        capture_output=True, text=True, timeout=120)
    if cc.returncode != 0:
        pytest.skip(f"cannot build {tag} statically (gcc and libc6-dev needed): {cc.stderr.strip()[-300:]}")
    (ctx / "Dockerfile").write_text(dockerfile)
    b = subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], capture_output=True, text=True, timeout=120)
    if b.returncode != 0:
        pytest.skip(f"cannot build the image {tag}: {b.stderr.strip()[-300:]}")
    return tag


@pytest.fixture(scope="module")
def dying_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {name: _static_image(tmp_path_factory.mktemp(name), f"echoconf-test-{name}:test",
                                [str(DYING / f"{name}.c")], (DYING / "Dockerfile").read_text())
            for name in ("sigpipe-on-reset", "exit-after-first-client")}


CAPPED = Path(__file__).resolve().parent / "servers" / "capped"

# Three bugs a plain `--image IMAGE --port 7` (default profile, default hang bound, no flags)
# must catch with exit 1, each in the case about it; none of these servers dies, so docker.alive
# passes. conn-cap is correct for its first 1000 connections, then never accepts again.
PLAIN = {"conn-cap": "echo.sequential", "broken-busy-loop": "robust.no-busy-loop",
         "broken-fd-leak": "robust.fd-leak"}


def package(binary: Path, ctx: Path, tag: str) -> str:
    """`binary` and the shared libraries it loads (as ldd lists them, the loader included) in an
    image FROM scratch that runs it on port 7."""
    root = ctx / "root"
    root.mkdir(parents=True)
    shutil.copy2(binary, root / "server")
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    for lib in re.findall(r"(?:=> |^\s*)(/\S+)", ldd.stdout, re.MULTILINE):  # none when static
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dest)  # the file a symlink names, under the symlink's name
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY root/ /\nEXPOSE 7\nCMD ["/server"]\n')
    b = subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, f"cannot build {tag}: {b.stderr[-500:]}"
    return tag


@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess[str], dict]]:
    """name -> (the finished plain run, its report.json); the runs go at once: each is mostly
    waiting on bounds."""
    from echoconf import registry

    images = {"conn-cap": _static_image(tmp_path_factory.mktemp("conn-cap"), "echoconf-test-conn-cap:test",
                                        [str(CAPPED / "conn-cap.c")], (DYING / "Dockerfile").read_text())}
    for name in PLAIN:
        if name not in images:
            binary = registry.find_binary(name)
            assert binary is not None, f"{name} is not built ({registry.BUILD_HINT})"
            images[name] = package(binary, tmp_path_factory.mktemp(name), f"echoconf-test-{name}:plain")

    def plain(name: str) -> tuple[str, tuple[subprocess.CompletedProcess[str], dict]]:
        out = tmp_path_factory.mktemp(f"{name}-report")
        p = run("run", "--image", images[name], "--port", "7", "--report", str(out), timeout=900)
        return name, (p, load_report(out / "default") if (out / "default" / "report.json").exists() else {})

    with concurrent.futures.ThreadPoolExecutor(len(PLAIN)) as pool:
        return dict(pool.map(plain, PLAIN))


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", PLAIN)
def test_plain_image_run_catches_the_bug(plain_runs: dict[str, tuple[subprocess.CompletedProcess[str], dict]],
                                         name: str) -> None:
    p, doc = plain_runs[name]
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    got = outcomes(doc)
    assert got[PLAIN[name]] == "failed" and got["echo.basic"] == "passed", got
    assert got["docker.alive"] == "passed"
    assert not doc["summary"]["harness_errors"]
    # Every failure says what the server did, none is a bare exception ("TimeoutError: timed out").
    bare = [c["id"] for c in doc["cases"] if c["outcome"] == "failed"
            and c["detail"]["message"].split(":", 1)[0].endswith(("Error", "Exception"))]
    assert not bare, bare


def _case_detail(doc: dict, cid: str) -> dict:
    return next(c for c in doc["cases"] if c["id"] == cid).get("detail") or {}


def test_server_killed_by_sigpipe_fails_the_case_and_the_run_goes_on(dying_images: dict[str, str],
                                                                      tmp_path: Path) -> None:
    p = run("run", "--image", dying_images["sigpipe-on-reset"], "--case", "echo.basic",
            "--case", "close.reset-pending", "--case", "close.connect-close", "--case", "docker.alive",
            "--report", str(tmp_path), timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "harness error" not in p.stdout + p.stderr
    doc = load_report(tmp_path / "default")
    got = outcomes(doc)
    assert got["close.reset-pending"] == "failed"
    d = _case_detail(doc, "close.reset-pending")
    assert "killed by SIGPIPE (signal 13" in d["message"] and "141" in d["message"], d
    assert "SIGPIPE" in d["server_died"]
    assert "Connection reset by peer" in d["message"]  # the tail of the server's own output
    # Restarted at the same address: the next case has a verdict of its own.
    assert got["close.connect-close"] == "passed"
    assert got["echo.basic"] == "passed"
    assert got["docker.alive"] == "failed"
    assert "SIGPIPE" in _case_detail(doc, "docker.alive")["message"]
    assert server_state(tmp_path, "default").startswith("exited 141 (SIGPIPE)")
    assert doc["summary"]["exit_status"] == 1 and not doc["summary"]["harness_errors"]
    assert "[default] failed   close.reset-pending" in p.stdout


def test_server_that_exits_after_its_first_client_fails_cases_not_the_harness(
        dying_images: dict[str, str], tmp_path: Path) -> None:
    p = run("run", "--image", dying_images["exit-after-first-client"], "--case", "echo.basic",
            "--case", "echo.nul", "--case", "close.half-close-eof", "--case", "docker.alive", "--report",
            str(tmp_path), timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "harness error" not in p.stdout + p.stderr and "nothing accepts" not in p.stdout
    doc = load_report(tmp_path / "default")
    got = outcomes(doc)
    # Readiness never spends a client: echo.basic is the server's first client and is served.
    # Before the next case a fresh client is tried, which the exiting server cannot serve: the
    # death is found then, whatever the scheduler did, and charged to echo.basic.
    assert got["echo.basic"] == "failed"
    assert _case_detail(doc, "echo.basic")["message"].startswith("The server died at the end of this case")
    assert "exited with status 0" in _case_detail(doc, "echo.basic")["message"]
    assert "served one client, exiting" in _case_detail(doc, "echo.basic")["message"]
    # echo.nul needs two clients (the second is refused); close.half-close-eof needs one, and
    # the death after it is found when the run ends.
    assert got["echo.nul"] == "failed"
    assert _case_detail(doc, "close.half-close-eof")["message"].startswith("The server died at the end of this case")
    # Restarted, every later case still runs and gets a verdict (none is a harness error).
    assert set(got) >= {"echo.nul", "close.half-close-eof", "docker.alive"}
    assert not any(o == "error" for o in got.values()), got
    assert got["docker.alive"] == "failed"
    assert "exited 0" in _case_detail(doc, "docker.alive")["message"]
    assert doc["target"]["restarts"] >= 1
    assert doc["summary"]["exit_status"] == 1 and not doc["summary"]["harness_errors"]


def test_server_cut_off_the_network_keeps_its_address() -> None:
    """docker.disconnect-reconnect cuts a server off while other cells start containers on the
    same network (docker/run runs several at once): none may take its address meanwhile."""
    from echoconf import dockerenv as de
    from echoconf.container import DockerTarget
    from echoconf.lab import Lab

    with Lab() as lab:
        a = lab.start_server(de.IMAGE, "echo-epoll --port 7", 7, "default")
        cut = DockerTarget(a.name, a.address, a.port)  # what the docker.* cases drive
        cut.disconnect()
        b = lab.start_server(de.IMAGE, "echo-poll --port 7", 7, "default")
        assert b.ipv4 != a.ipv4
        cut.reconnect()
        assert de.probe(a.address, a.port, timeout=2.0) is None
        assert de.probe(b.address, b.port, timeout=2.0) is None
def test_engine_calls_never_iterate_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Private instances start in background threads while pytest sets and removes
    PYTEST_CURRENT_TEST in the main one: an engine call that iterates os.environ (requests'
    proxy lookup) then raised KeyError, and a case ended as a harness error."""
    import os

    from echoconf import dockerenv as de

    class Environ(dict[str, str]):
        def __iter__(self) -> Any:
            raise AssertionError("os.environ iterated")

        def keys(self) -> Any:
            raise AssertionError("os.environ iterated")

        def items(self) -> Any:
            raise AssertionError("os.environ iterated")

    c = de.client()
    monkeypatch.setattr(os, "environ", Environ(os.environ))
    c.ping()
    c.containers.list(limit=1)


def test_the_harnesses_of_one_lab_share_a_namespace_which_the_lab_removes() -> None:
    """The cells of docker/run each start their tiny-buffers and IPv6 instances in namespaces
    they share (shared_ns): two asking at once get one holder, with the sysctls asked for, and
    their servers' ports for neighbours lie apart."""
    import concurrent.futures

    import docker.errors

    from echoconf import dockerenv as de
    from echoconf import shared_ns
    from echoconf.lab import Lab

    tiny = dict(de.ENV_PROFILES["tiny-buffers"].sysctls)
    with Lab(ipv6=True) as lab:
        a = lab.start_server(de.IMAGE, "echo-epoll --port {port}", 7, "default")
        b = lab.start_server(de.IMAGE, "echo-poll --port {port}", 7, "default")
        assert a._server.labels[de.PORT_BLOCK_LABEL] != b._server.labels[de.PORT_BLOCK_LABEL]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda s: shared_ns.holder(s._holder, tiny, False), [a, b]))
        assert got[0].id == got[1].id
        assert got[0].attrs["HostConfig"]["Sysctls"] == tiny
        v6 = shared_ns.holder(a._holder, {}, True)
        assert v6.id != got[0].id
        assert any(n.get("GlobalIPv6Address") for n in v6.attrs["NetworkSettings"]["Networks"].values())
        names = [got[0].name, v6.name]
    for name in names:
        with pytest.raises(docker.errors.NotFound):
            de.client().containers.get(name)


def test_servers_without_fault_cases_share_a_namespace_on_ports_of_their_own() -> None:
    """The matrix's cells without fault cases start their server in a namespace they share
    (image.run_profile): each on the first port of its own block, each reachable, and the
    namespace outlives each of them."""
    from echoconf import dockerenv as de
    from echoconf.lab import Lab

    with Lab() as lab:
        a = lab.start_server(de.IMAGE, "echo-epoll --port {port}", 7, "low-nofile", shared_namespace=True)
        b = lab.start_server(de.IMAGE, "echo-poll --port {port}", 7, "memory", shared_namespace=True)
        assert a._holder.id == b._holder.id
        assert a.address == b.address and a.port != b.port
        assert de.probe(a.address, a.port, timeout=2.0) is None
        assert de.probe(b.address, b.port, timeout=2.0) is None
        a.stop()
        assert de.probe(b.address, b.port, timeout=2.0) is None
        with pytest.raises(de.DockerEnvError, match="told its port"):
            lab.start_server(de.IMAGE, "echo-epoll --port 7", 7, "default", shared_namespace=True)


# --------------------------------------------------------------------------------------------
# The harness on the Docker host sees the container's processes (/proc of Docker's State.Pid,
# checked against its cgroup): the cases that observe the shared server run under --image as
# they do locally. Every broken server's image fails them as locally: test_image_parity.py.

OBSERVED = ["robust.no-busy-loop", "robust.fd-leak", "robust.bounded-memory"]


def test_reference_image_passes_the_observed_cases(tmp_path: Path) -> None:
    argv = ["run", "--image", "echoconf:latest", "--command-in-image", "echo-epoll --port 7",
            "--profile", "quick", "--strict", "--report", str(tmp_path)]
    for c in OBSERVED:
        argv += ["--case", c]
    p = run(*argv, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = load_report(tmp_path / "default")
    got = outcomes(doc)
    assert {c: got[c] for c in OBSERVED} == {c: "passed" for c in OBSERVED}, got
    # The run's options reach the harness; an image run has a hang bound unless told otherwise.
    assert doc["strict"] is True and doc["hang_bound"] == 5.0, (doc["strict"], doc["hang_bound"])
    # The replay names the image, not the container's address, which is gone after the run.
    replay = ("conformance/echoconf run --image echoconf:latest --port 7 --env-profile default "
              "--command-in-image 'echo-epoll --port 7' --profile quick --seed 862 --hang-bound 5 --strict")
    assert doc["replay"] == replay, doc["replay"]
    assert f"replay: {replay}" in p.stdout, p.stdout


# --------------------------------------------------------------------------------------------
# The cases that start private instances of the server (fixture fresh_server) start the image
# again under --image (fresh_container.py): limits, signals, a kill and restart in the same
# network namespace, tiny buffers, a dual-stack network, descriptors held by echoconf-hold-fds,
# a second address in the instance's network namespace.
# The reference image passes them all; every broken server's image fails them as locally
# (test_image_parity.py).

PRIVATE = ["robust.fd-exhaustion", "robust.fd-exhaustion-prompt", "robust.fd-setsize", "robust.eintr",
           "robust.restart-rebind", "partial.tiny-buffers", "robust.ipv6", "udp.ipv6", "udp.reply-source"]


def _private_run(image: str, out: Path, cases: list[str], *extra: str,
                 env_profile: str = "default") -> tuple[subprocess.CompletedProcess, dict]:
    argv = ["run", "--image", image, "--port", "7", "--profile", "quick", "--capability", "concurrent",
            "--capability", "ipv6", "--capability", "udp", "--env-profile", env_profile, "--report", str(out),
            *extra]
    for c in cases:
        argv += ["--case", c]
    p = run(*argv, timeout=300)
    return p, outcomes(load_report(out / env_profile))


@pytest.mark.parametrize("command", ["echo-epoll --port 7", "echo-epoll --port {port}"],
                         ids=["own-namespaces", "neighbours"])
def test_reference_image_passes_the_private_instance_cases(command: str, tmp_path: Path) -> None:
    """With a fixed port each instance gets a network namespace of its own; with `{port}` those
    whose network is the run's server's join its namespace on ports of their own."""
    p, got = _private_run("echoconf:latest", tmp_path, PRIVATE, "--command-in-image", command, "--strict")
    assert p.returncode == 0, p.stdout + p.stderr
    assert {c: got[c] for c in PRIVATE} == {c: "passed" for c in PRIVATE}, got


def test_private_instance_cases_run_under_the_descriptor_limit_profile(tmp_path: Path) -> None:
    """Under low-nofile (RLIMIT_NOFILE 64) robust.fd-setsize's instance gets room for the
    descriptors it is about: no owned case is skipped in any matrix cell."""
    p, got = _private_run("echoconf:latest", tmp_path, PRIVATE, "--command-in-image", "echo-select --port 7",
                          "--strict", env_profile="low-nofile")
    assert p.returncode == 0, p.stdout + p.stderr
    assert {c: got[c] for c in PRIVATE} == {c: "passed" for c in PRIVATE}, got


# --------------------------------------------------------------------------------------------
# RFC 862's UDP service alone: --image --transport udp. Readiness is the UDP port bound in the
# container's namespace; every udp.* case runs, private instances included, and nothing else.


def test_udp_only_image_is_tested_over_udp(tmp_path: Path) -> None:
    p = run("run", "--image", "echoconf:latest", "--command-in-image", "echo-epoll --port 7 --transport udp",
            "--port", "7", "--transport", "udp", "--capability", "ipv6", "--strict", "--report", str(tmp_path),
            timeout=200)
    assert p.returncode == 0, p.stdout + p.stderr
    got = outcomes(load_report(tmp_path / "default"))
    udp = [c for c in CATALOGUE if c.startswith("udp.")]
    assert got == {c: "passed" for c in udp}, got


def test_udp_only_image_without_transport_udp_says_so(tmp_path: Path) -> None:
    """A server that binds only a UDP port never listens for TCP: exit 2, and the reason names
    the option that would test it."""
    p = run("run", "--image", "echoconf:latest", "--command-in-image", "echo-epoll --port 7 --transport udp",
            "--port", "7", "--report", str(tmp_path), timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "a UDP socket is bound to port 7: for a server that serves UDP alone, say --transport udp" in p.stdout, \
        p.stdout
