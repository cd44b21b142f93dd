"""The `echoconf` command: exit statuses, report.json, --list/--case/--seed, death and restart, XPASS."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ECHOCONF, EXAMPLE, REPO, badecho, example, interrupt_after, load_report, outcomes, run

CATALOGUE = """echo.basic echo.byte-values echo.nul echo.crlf echo.sizes echo.large
echo.pipelined echo.no-extra echo.chunking echo.sequential echo.concurrent echo.pause
partial.one-byte-writes partial.slow-reader partial.burst-half-close partial.many-interleaved
partial.tiny-buffers close.half-close-flush close.half-close-eof close.no-early-close
close.reset-pending close.connect-close close.connect-reset close.vanish-while-writing
robust.stalled-reader robust.bounded-memory robust.no-busy-loop robust.fd-leak robust.fd-exhaustion
robust.fd-exhaustion-prompt robust.fd-setsize robust.eintr robust.restart-rebind robust.ipv6 state.machine
udp.sizes udp.empty udp.one-answer udp.clients udp.unreachable udp.burst udp.reply-source
udp.loop-safety udp.ipv6 udp.health
docker.nofile-exhaustion docker.pause-resume docker.disconnect-reconnect docker.kill-restart docker.alive""".split()


def test_list_shows_every_catalogue_case() -> None:
    p = run("run", "--list")
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines() if line.strip() and not line.startswith(" ")]
    listed = {r[0]: r[1] for r in rows}
    grades = {r[0]: r[2] for r in rows}
    assert set(listed) == set(CATALOGUE)
    assert set(listed.values()) <= {"rfc862", "derived", "robust"}
    assert listed["echo.basic"] == "rfc862" and listed["state.machine"] == "derived"
    assert set(grades.values()) == {"MUST", "SHOULD"}
    assert grades["robust.fd-exhaustion"] == "MUST" and grades["robust.fd-exhaustion-prompt"] == "SHOULD"
    # every case says why it has its grade, on the line after it
    assert p.stdout.count("why MUST: ") + p.stdout.count("why SHOULD: ") == len(CATALOGUE)


def test_list_with_case_selects() -> None:
    p = run("run", "--list", "--case", "close.*", "--case", "echo.basic")
    ids = [line.split()[0] for line in p.stdout.splitlines() if line.strip() and not line.startswith(" ")]
    assert p.returncode == 0
    assert set(ids) == {c for c in CATALOGUE if c.startswith("close.")} | {"echo.basic"}


def test_usage_errors_exit_2() -> None:
    assert run("run").returncode == 2  # no server given
    assert run("run", "--bogus").returncode == 2
    assert run("run", "--command", "server --port 7").returncode == 2  # no {port}
    assert run("run", "--profile", "nope", "--target", "x:1").returncode == 2


def test_missing_builtin_exit_2_with_hint(tmp_path: Path) -> None:
    import os

    p = run("run", "--builtin", "echo-epoll", env={**os.environ, "ECHOCONF_BIN_DIR": str(tmp_path)})
    assert p.returncode == 2
    assert "cmake --workflow --preset release" in p.stderr


def test_server_never_ready_exit_2(report_dir: Path) -> None:
    p = run("run", "--command", f"{sys.executable} -c 'import sys; sys.exit(3)' {{port}}",
            "--case", "echo.basic", "--report", str(report_dir), timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    doc = load_report(report_dir)
    assert doc["summary"]["harness_errors"]
    assert "exited with status 3" in doc["summary"]["harness_errors"][0]


def test_pass_exit_0_and_report_schema(report_dir: Path) -> None:
    p = run("run", "--command", example(), "--case", "echo.b*", "--case", "close.half-close-eof",
            "--seed", "5", "--profile", "quick", "--report", str(report_dir))
    assert p.returncode == 0, p.stdout + p.stderr
    doc = load_report(report_dir)
    assert doc["version"] == 2
    for key in ("implementation", "target", "profile", "seed", "environment", "cases", "summary"):
        assert key in doc
    assert doc["seed"] == 5 and doc["profile"] == "quick"
    assert outcomes(doc) == {"echo.basic": "passed", "echo.byte-values": "passed",
                             "close.half-close-eof": "passed"}
    for c in doc["cases"]:
        assert set(c) >= {"id", "level", "grade", "why", "requirement", "outcome", "duration", "detail"}
    assert doc["summary"]["passed"] == 3 and doc["summary"]["exit_status"] == 0
    assert doc["summary"]["conformant"] is True and doc["summary"]["recommendations"] == []
    assert doc["strict"] is False
    names = {tc.get("name") for tc in ET.parse(report_dir / "junit.xml").iter("testcase")}
    assert names == {"echo.basic", "echo.byte-values", "close.half-close-eof"}
    assert "echo.basic" in (report_dir / "report.md").read_text()
    # one line per case on stdout
    assert any(line.startswith("passed") and "echo.basic" in line for line in p.stdout.splitlines())


def test_mismatch_exit_1_with_offset_and_sentence(report_dir: Path) -> None:
    p = run("run", "--command", badecho("nul"), "--case", "echo.nul", "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    case = load_report(report_dir)["cases"][0]
    assert case["outcome"] == "failed"
    d = case["detail"]
    assert d["offset"] == 0 and d["sent"] >= 65536
    assert "NUL" in d["message"]
    assert "expected" in d and "observed" in d


def test_dropped_tail_explained(report_dir: Path) -> None:
    p = run("run", "--command", badecho("drop-tail"), "--case", "close.half-close-flush",
            "--profile", "quick", "--report", str(report_dir))
    assert p.returncode == 1
    d = load_report(report_dir)["cases"][0]["detail"]
    assert "sent back only" in d["message"] and "FM-05" in d["message"]


def test_death_is_recorded_and_server_restarted(report_dir: Path) -> None:
    p = run("run", "--command", badecho("die-on-reset"), "--case", "close.reset-pending",
            "--case", "close.connect-close", "--case", "echo.basic", "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    doc = load_report(report_dir)
    o = outcomes(doc)
    assert o["close.reset-pending"] == "failed"
    assert "killed by SIGPIPE (signal 13)" in doc["cases"][1]["detail"]["message"] or \
        "killed by SIGPIPE (signal 13)" in str([c["detail"] for c in doc["cases"]])
    assert o["echo.basic"] == "passed" and o["close.connect-close"] == "passed"
    assert doc["target"]["restarts"] >= 1
    assert any(h["exit"] and "SIGPIPE" in h["exit"] for h in doc["server_output"])


def test_death_after_the_last_check_is_charged_to_its_case(report_dir: Path) -> None:
    """A server that exits a moment after its client is done dies after the case's last
    check. Before the next case a fresh client is tried: an exiting server cannot serve it,
    so each case is charged with the death it caused, whatever the scheduler did."""
    # Each of these cases uses one client.
    p = run("run", "--command", badecho("one-client"), "--case", "echo.basic", "--case", "echo.byte-values",
            "--case", "close.half-close-eof", "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    doc = load_report(report_dir)
    for c in doc["cases"]:
        assert c["outcome"] == "failed" and c["grade"] == "must", c
        assert c["detail"]["message"].startswith("The server died at the end of this case: "
                                                 "the server exited with status 0"), c
    assert doc["target"]["restarts"] == 2 and not doc["summary"]["harness_errors"]


def test_failure_on_a_private_instance_that_died_is_that_death(report_dir: Path) -> None:
    """robust.eintr's private instance serves the liveness probe as its one client and exits;
    the echo that follows is refused. The failure says the server died, and how, not only
    that a connection was refused."""
    p = run("run", "--command", badecho("one-client"), "--case", "robust.eintr", "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    [c] = load_report(report_dir)["cases"]
    assert c["outcome"] == "failed", c
    assert c["detail"]["message"].startswith("The server died during this case: the server exited with "
                                             "status 0"), c
    assert "server_died" in c["detail"] and "refused" in c["detail"]["observed_failure"], c


def test_a_server_out_of_descriptors_is_told_so(report_dir: Path) -> None:
    """broken-fd-leak never closes a finished connection: at a limit of 64 descriptors it can
    accept no one. The failure says so, with the count, not only that a client got nothing."""
    from echoconf import registry

    _need("broken-fd-leak")
    binary = registry.find_binary("broken-fd-leak")
    p = run("run", "--command", f"prlimit --nofile=64 {binary} --port {{port}}", "--case", "close.connect-close",
            "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    [c] = load_report(report_dir)["cases"]
    assert c["outcome"] == "failed", c
    assert "its whole limit (RLIMIT_NOFILE 64)" in c["detail"]["message"], c
    assert re.fullmatch(r"it held 6[2-4] descriptors, its whole limit \(RLIMIT_NOFILE 64\)",
                        c["detail"]["descriptors"]), c


def test_death_while_parked_is_charged_to_the_parked_cases(report_dir: Path) -> None:
    """broken-off-by-one dies of close.no-early-close's parked 32 KiB while partial.tiny-buffers
    runs on a private instance: the cases whose connections were parked are charged, never
    the case on the private instance."""
    _need("broken-off-by-one")
    p = run("run", "--builtin", "broken-off-by-one", "--case", "close.no-early-close", "--case",
            "echo.pause", "--case", "partial.tiny-buffers", "--profile", "quick", "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    o = outcomes(doc := load_report(report_dir))
    assert o == {"echo.pause": "failed", "partial.tiny-buffers": "passed", "close.no-early-close": "failed"}, o
    for c in doc["cases"]:
        if c["outcome"] == "failed":
            assert "connection was parked" in c["detail"]["message"] and "server_died" in c["detail"], c


def test_xpass_fails_the_run(report_dir: Path) -> None:
    p = run("run", "--command", example(), "--case", "echo.basic", "--xfail", "echo.basic=claimed broken",
            "--report", str(report_dir))
    assert p.returncode == 1
    assert outcomes(load_report(report_dir)) == {"echo.basic": "xpassed"}


def test_expected_failure_keeps_exit_0(report_dir: Path) -> None:
    p = run("run", "--command", badecho("nul"), "--case", "echo.nul", "--xfail", "echo.nul=known NUL bug",
            "--report", str(report_dir))
    assert p.returncode == 0, p.stdout
    assert outcomes(load_report(report_dir)) == {"echo.nul": "xfailed"}


def test_registry_expected_failures(tmp_path: Path, report_dir: Path) -> None:
    reg = tmp_path / "impls.toml"
    reg.write_text(f'[nulbug]\ncommand = "{badecho("nul")}"\ncapabilities = ["concurrent"]\n'
                   '[nulbug.expected-failures]\n"echo.nul" = "cuts at NUL"\n"echo.basic" = "wrongly claimed"\n')
    p = run("run", "--impl", "nulbug", "--registry", str(reg), "--case", "echo.nul", "--case", "echo.basic",
            "--report", str(report_dir))
    assert p.returncode == 1
    assert outcomes(load_report(report_dir)) == {"echo.nul": "xfailed", "echo.basic": "xpassed"}


@pytest.mark.parametrize("table, error", [
    ('[broken.x]\nbuiltin = "b"\nmust-fail = ["echo.basic"]\nmay-fail = ["echo.nul"]\n', "may-fail is not supported"),
    ('[broken.x]\nbuiltin = "b"\nmust-fail = ["echo.basic"]\njudged-on = ["echo.nul"]\n',
     "must-fail cases ['echo.basic'] are not among judged-on"),
    ('[x]\nbuiltin = "b"\njudged-on = ["echo.nul"]\n', "belong in [broken.*] entries"),
])
def test_registry_refuses_lists_that_cannot_be_judged(tmp_path: Path, table: str, error: str) -> None:
    from echoconf import registry

    reg = tmp_path / "impls.toml"
    reg.write_text(table)
    with pytest.raises(registry.RegistryError, match=re.escape(error)):
        registry.load(reg)


def test_target_mode_skips_owned_cases(report_dir: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[2])
        p = run("run", "--target", f"127.0.0.1:{port}", "--case", "echo.basic", "--case", "robust.fd-leak",
                "--report", str(report_dir))
        assert p.returncode == 0, p.stdout + p.stderr
        doc = load_report(report_dir)
        assert outcomes(doc) == {"echo.basic": "passed", "robust.fd-leak": "skipped"}
        assert "a --target server can only be connected to" in doc["cases"][1]["detail"]["message"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_seed_replays_hypothesis(tmp_path: Path) -> None:
    docs = []
    for i in range(2):
        d = tmp_path / f"r{i}"
        p = run("run", "--command", example(), "--case", "state.machine", "--seed", "42", "--profile", "quick",
                "--report", str(d))
        assert p.returncode == 0, p.stdout
        docs.append(load_report(d))
    assert docs[0]["seed"] == docs[1]["seed"] == 42
    assert "--seed 42" in docs[0]["replay"]


def test_no_case_can_hang_on_a_silent_server(report_dir: Path) -> None:
    """A server that accepts but never answers: every case ends within its bounds."""
    lsock = socket.create_server(("127.0.0.1", 0), backlog=512)
    port = lsock.getsockname()[1]
    t0 = time.monotonic()
    try:
        p = run("run", "--target", f"127.0.0.1:{port}", "--case", "echo.basic", "--case", "close.half-close-eof",
                "--report", str(report_dir), timeout=60)
    finally:
        lsock.close()
    assert p.returncode == 1
    assert time.monotonic() - t0 < 30
    assert set(outcomes(load_report(report_dir)).values()) == {"failed"}


def _need(binary: str) -> None:
    from echoconf import registry

    if registry.find_binary(binary) is None:
        pytest.skip(f"{binary} is not built ({registry.BUILD_HINT})")


def test_should_failure_is_a_recommendation(report_dir: Path) -> None:
    """A failed SHOULD case keeps exit 0 and says so everywhere; --strict makes it exit 1."""
    _need("broken-no-reuseaddr")
    p = run("run", "--impl", "broken.no-reuseaddr", "--case", "robust.restart-rebind", "--case", "echo.basic",
            "--report", str(report_dir))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "conformant; 1 recommendation not met: robust.restart-rebind" in p.stdout
    doc = load_report(report_dir)
    case = {c["id"]: c for c in doc["cases"]}["robust.restart-rebind"]
    assert case["outcome"] == "failed" and case["grade"] == "should" and "SO_REUSEADDR" in case["why"] + \
        case["detail"]["message"]
    s = doc["summary"]
    assert s["conformant"] is True and s["must_failed"] == 0 and s["should_failed"] == 1
    assert [r["id"] for r in s["recommendations"]] == ["robust.restart-rebind"]
    junit = {tc.get("name"): tc for tc in ET.parse(report_dir / "junit.xml").iter("testcase")}
    skipped = junit["robust.restart-rebind"].find("skipped")
    assert skipped is not None and "recommendation not met" in skipped.get("message", "")
    assert junit["robust.restart-rebind"].find("failure") is None
    strict = run("run", "--impl", "broken.no-reuseaddr", "--case", "robust.restart-rebind", "--strict",
                 "--report", str(report_dir / "strict"))
    assert strict.returncode == 1, strict.stdout
    sdoc = load_report(report_dir / "strict")
    assert sdoc["strict"] is True and sdoc["summary"]["exit_status"] == 1
    assert ET.parse(report_dir / "strict" / "junit.xml").find(".//failure") is not None


def test_with_death_names_the_death() -> None:
    """A death turns the case's symptom into the headline (it once raised a TypeError)."""
    from echoconf.oracle import CaseFailure
    from echoconf.steps import with_death
    from echoconf.target import Target

    class Dead(Target):
        def death(self, grace: float = 0.0) -> str | None:
            return "the server was killed by SIGPIPE (signal 13)"

    f = with_death(Dead(), CaseFailure("3 of 8 connections hung.", hung=3))
    assert f.detail["message"].startswith("The server died: the server was killed by SIGPIPE")
    assert f.detail["observed_failure"] == "3 of 8 connections hung." and f.detail["hung"] == 3
    alive = with_death(Target(), CaseFailure("x"))
    assert alive.detail == {"message": "x"}


@pytest.mark.parametrize("mode", ["builtin", "impl"])
def test_death_is_a_failure_in_every_mode(mode: str, report_dir: Path) -> None:
    """broken-sigpipe dies of SIGPIPE when a client vanishes while it writes: exit 1, the case
    says how it died, the server is restarted and the next cases run."""
    _need("broken-sigpipe")
    source = ["--builtin", "broken-sigpipe"] if mode == "builtin" else ["--impl", "broken.sigpipe"]
    # catalogue order: echo.basic, the death, then robust.stalled-reader on the restarted server
    p = run("run", *source, "--case", "close.vanish-while-writing", "--case", "echo.basic",
            "--case", "robust.stalled-reader", "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    doc = load_report(report_dir)
    by_id = {c["id"]: c for c in doc["cases"]}
    died = by_id["close.vanish-while-writing"]
    assert died["outcome"] == "failed" and died["grade"] == "must"
    assert "killed by SIGPIPE (signal 13)" in died["detail"]["message"], died
    assert by_id["echo.basic"]["outcome"] == "passed" and by_id["robust.stalled-reader"]["outcome"] == "passed"
    assert doc["target"]["restarts"] >= 1 and not doc["summary"]["harness_errors"]


def test_death_in_an_expected_failure_still_fails(report_dir: Path) -> None:
    """The registry may excuse a symptom, never a death."""
    p = run("run", "--command", badecho("die-on-reset"), "--case", "close.reset-pending", "--case", "echo.basic",
            "--xfail", "close.reset-pending=known to mishandle resets", "--report", str(report_dir))
    assert p.returncode == 1, p.stdout + p.stderr
    doc = load_report(report_dir)
    case = {c["id"]: c for c in doc["cases"]}["close.reset-pending"]
    assert case["outcome"] == "failed" and case["grade"] == "must"
    assert "SIGPIPE" in case["detail"]["message"] and "a death is always a failure" in case["detail"]["message"]
    assert outcomes(doc)["echo.basic"] == "passed"


def test_readme_catalogue_is_the_list_output() -> None:
    """conformance/README.md's case table is `--list` output: same ids, levels, grades, reasons."""
    from conftest import CONFORMANCE

    p = run("run", "--list")
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    listed = {}
    for head, why in zip(lines[::2], lines[1::2]):
        cid, level, grade = head.split()[:3]
        listed[cid] = (level, grade, why.split(": ", 1)[1].strip())
    table = {}
    for line in (CONFORMANCE / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 6:
            table[cells[0].strip("`")] = (cells[1], cells[2], cells[5])
    assert table == listed


def test_a_bug_in_the_harness_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    """An exception of the harness's own (AttributeError, TypeError, ...) says nothing about the
    server: the case is an error and the run a harness error (exit 2), never a failed case or
    a recommendation not met."""
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "plugins"),
                                                       os.environ.get("PYTHONPATH", "")]))
    p = run("run", "--command", example(), "--case", "echo.basic", "--case", "echo.crlf",
            "--report", str(tmp_path), "--", "-p", "harness_bug", env=env)
    assert p.returncode == 2, p.stdout + p.stderr
    doc = load_report(tmp_path)
    assert outcomes(doc) == {"echo.basic": "error", "echo.crlf": "passed"}
    msg = next(c for c in doc["cases"] if c["id"] == "echo.basic")["detail"]["message"]
    assert msg.startswith("harness error: AttributeError") and "not in the server" in msg, msg
    assert doc["summary"]["harness_errors"] and not doc["summary"]["conformant"]


def _alive_with(token: str) -> list[str]:
    """The processes whose environment carries `token`: what the run started, and what those forked."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if token.encode() in f.read():
                    with open(f"/proc/{pid}/cmdline", "rb") as g:
                        argv = g.read().split(b"\0")
                    found.append(f"{pid} {b' '.join(argv).decode(errors='replace')}")
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


@pytest.mark.parametrize("server", [
    # A real forking server: a process per connection, in the server's process group.
    "socat TCP-LISTEN:{port},reuseaddr,fork PIPE",
    "example",
])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_run_stops_every_server_process_and_gives_no_verdict(server: str, sig: signal.Signals,
                                                                          report_dir: Path) -> None:
    if server.startswith("socat") and shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat)")
    command = example() if server == "example" else server
    token = f"ECHOCONF_TEST_RUN={uuid.uuid4().hex}"
    env = dict(os.environ, ECHOCONF_TEST_RUN=token.split("=", 1)[1])
    def server_runs(so_far: str) -> None:
        assert _alive_with(token), so_far  # the server runs: the check below can see it

    # then echo.sequential: a connection after another, socat forks for each
    code, seen, rest = interrupt_after(["run", "--command", command, "--case", "echo.basic", "--case",
                                        "echo.sequential", "--report", str(report_dir)], "passed   echo.basic",
                                       sig, env=env, before=server_runs)
    out = seen + rest
    assert code == 2, out
    assert "the run was interrupted (Ctrl-C or SIGTERM)" in out
    assert "not conformant" not in out
    doc = load_report(report_dir)
    assert doc["summary"]["exit_status"] == 2
    assert not [c for c in doc["cases"] if c["outcome"] in ("failed", "error")], doc["cases"]
    assert _alive_with(token) == []


@pytest.mark.parametrize("escape", ["", "setsid "], ids=["child", "setsid-child"])
def test_what_the_server_left_running_is_killed_and_told(escape: str, report_dir: Path) -> None:
    """A child that ignores SIGTERM outlives the server's main process: the harness kills it
    and the report says so, as an observation, not a verdict. One that left the server's
    session (setsid) too: the server runs in a cgroup of its own, which it cannot leave."""
    from echoconf import proctree

    if escape and proctree.parent() is None:
        pytest.skip("no cgroup v2 this process may create cgroups in: a server's tree is its session here")
    token = uuid.uuid4().hex
    command = (f"sh -c \"{escape}sh -c 'trap \\\"\\\" TERM; exec sleep 300' & "
               f"exec {sys.executable} {EXAMPLE} --port {{port}}\"")
    p = subprocess.run([sys.executable, str(ECHOCONF), "run", "--command", command, "--case", "echo.basic",
                        "--report", str(report_dir)], capture_output=True, text=True, timeout=120, cwd=REPO,
                       env=dict(os.environ, ECHOCONF_TEST_RUN=token))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "left 1 process it had started running when it was ended; the harness killed it: sleep 300" in p.stdout
    doc = load_report(report_dir)
    assert [h.get("left_behind") for h in doc["server_output"]] == [["sleep 300"]]
    assert doc["target"]["process_tree"] == ("cgroup" if proctree.parent() is not None else "session")
    assert _alive_with(token) == []


def test_namespaces_of_a_killed_harness_are_removed() -> None:
    """A harness killed with SIGKILL cannot delete its network namespaces: the next one to make
    a namespace (and ./test's last stage) deletes those whose process is gone, and only those."""
    from echoconf import netns

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that is gone
    stale, live = f"echoconf-{dead.pid}-0", f"echoconf-{os.getpid()}-999"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        assert stale in netns.cleanup_stale()
        left = os.listdir(netns.NETNS_DIR)
        assert stale not in left and live in left
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_server_cgroups_of_a_killed_harness_are_ended_and_removed() -> None:
    """A harness killed with SIGKILL leaves its servers running in their cgroups: the next one
    to start a server (and ./test's last stage) kills what runs in those whose harness is gone,
    and removes them; a live harness's cgroup is left alone."""
    from echoconf import proctree

    if proctree.parent() is None:
        pytest.skip("no cgroup v2 this process may create cgroups in")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that is gone
    parent = proctree.parent()
    assert parent is not None
    stale, live = parent / f"echoconf-{dead.pid}-0", parent / f"echoconf-{os.getpid()}-999"
    procs = []
    try:
        for path in (stale, live):
            path.mkdir()
            tree = proctree.CgroupTree(path)
            procs.append(subprocess.Popen([*tree.prefix(), "sleep", "300"], start_new_session=True))
        end = time.monotonic() + 10
        while not all(proctree.CgroupTree(p).pids() for p in (stale, live)) and time.monotonic() < end:
            time.sleep(0.01)  # each sleep joins its cgroup before it execs
        assert str(stale) in proctree.cleanup_stale()
        assert procs[0].wait(10) == -signal.SIGKILL
        assert not stale.exists() and live.exists() and procs[1].poll() is None
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for path in (stale, live):
            if path.exists():
                path.rmdir()
