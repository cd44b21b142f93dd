"""The `echoconf` command: exit statuses, report.json, --list/--case/--seed, death and restart, XPASS."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import EXAMPLE, badecho, example, load_report, outcomes, run

CATALOGUE = """echo.basic echo.byte-values echo.nul echo.crlf echo.sizes echo.large
echo.pipelined echo.no-extra echo.chunking echo.sequential echo.concurrent echo.pause
partial.one-byte-writes partial.slow-reader partial.burst-half-close partial.many-interleaved
partial.tiny-buffers close.half-close-flush close.half-close-eof close.no-early-close
close.reset-pending close.connect-close close.connect-reset close.vanish-while-writing
robust.stalled-reader robust.bounded-memory robust.no-busy-loop robust.fd-leak robust.fd-exhaustion
robust.fd-setsize robust.eintr robust.restart-rebind robust.ipv6 state.machine""".split()


def test_list_shows_every_catalogue_case() -> None:
    p = run("run", "--list")
    assert p.returncode == 0, p.stderr
    listed = {line.split()[0]: line.split()[1] for line in p.stdout.splitlines() if line.strip()}
    assert set(listed) == set(CATALOGUE)
    assert set(listed.values()) <= {"rfc862", "derived", "robust"}
    assert listed["echo.basic"] == "rfc862" and listed["state.machine"] == "derived"


def test_list_with_case_selects() -> None:
    p = run("run", "--list", "--case", "close.*", "--case", "echo.basic")
    ids = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
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
    assert doc["version"] == 1
    for key in ("implementation", "target", "profile", "seed", "environment", "cases", "summary"):
        assert key in doc
    assert doc["seed"] == 5 and doc["profile"] == "quick"
    assert outcomes(doc) == {"echo.basic": "passed", "echo.byte-values": "passed",
                             "close.half-close-eof": "passed"}
    for c in doc["cases"]:
        assert set(c) >= {"id", "level", "requirement", "outcome", "duration", "detail"}
    assert doc["summary"]["passed"] == 3 and doc["summary"]["exit_status"] == 0
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
        assert "own the server process" in doc["cases"][1]["detail"]["message"]
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
