"""`echoconf bench`: servers side by side, the ceiling measured in the same run, bench.json, the
plots and the page; a server that echoes wrong bytes fails the bench (exit 1), bad use is exit 2.
Short runs (a fraction of a second per mode): these prove what is written, not how fast."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from conftest import run
from echoconf import registry

pytestmark = [pytest.mark.skipif(registry.find_binary("echo-bench") is None,
                                 reason=f"echo-bench not built: {registry.BUILD_HINT}"),
              pytest.mark.timeout(300)]

SHORT = ["--seconds", "0.3", "--repeat", "1", "--hold", "300"]


def _bench(out: Path, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    p = run("bench", *args, *SHORT, "--out", str(out), timeout=240)
    doc = json.loads((out / "bench.json").read_text()) if (out / "bench.json").exists() else None
    return p.returncode, doc, p.stdout + p.stderr


def _built(name: str) -> str:
    path = registry.find_binary(name)
    if path is None:
        pytest.skip(f"{name} not built: {registry.BUILD_HINT}")
    return str(path)


def test_two_servers_side_by_side_every_mode(tmp_path: Path) -> None:
    _built("echo-epoll"), _built("echo-poll")
    code, doc, output = _bench(tmp_path, "--builtin", "echo-epoll", "--builtin", "echo-poll")
    assert code == 0, output
    assert doc is not None and doc["schema"] == 1 and doc["status"] == 0
    assert doc["ceiling"]["MiB_per_second"] > 0 and doc["ceiling"]["how"]
    assert [s["name"] for s in doc["servers"]] == ["echo-epoll", "echo-poll"]
    for s in doc["servers"]:
        assert s["observed"] and s["idle_rss_kib"] > 0
        for mode in ("stream", "stream8", "pingpong", "connrate", "connrate-rst", "udp", "hold"):
            d = s["modes"][mode]
            assert d["value"] > 0, (s["name"], mode, d)
            assert "wrong" not in d and "unavailable" not in d
        assert 0 < s["modes"]["stream"]["to_ceiling"] < 2
        assert s["modes"]["hold"]["median"]["conns"] == 300
        assert s["modes"]["hold"]["per_connection_kib"] is not None
        assert len(s["modes"]["hold"]["samples"]) > 0
    assert doc["servers"][0]["modes"]["pingpong"]["to_first"] == 1.0
    assert doc["servers"][1]["modes"]["pingpong"]["to_first"] > 0
    for stem in ("throughput", "memory"):
        for ext in ("png", "svg"):
            assert (tmp_path / f"{stem}.{ext}").stat().st_size > 1000
    page = (tmp_path / "bench.html").read_text()
    assert "echo-poll" in page and "throughput.svg" in page
    assert "echo-epoll" in output and "ceiling" in output  # the table


def test_a_server_that_echoes_wrong_bytes_fails_the_bench(tmp_path: Path) -> None:
    """broken-cross-talk sends one client's bytes to another: only a stream of several
    connections shows it, and then the bench says so and exits 1, whatever its speed."""
    cmd = f"{shlex.quote(_built('broken-cross-talk'))} --port {{port}}"
    code, doc, output = _bench(tmp_path, "--command", cmd, "--mode", "stream8", "--no-plots")
    assert code == 1, output
    assert doc is not None and doc["status"] == 1
    assert "wrong" in doc["servers"][0]["modes"]["stream8"]
    assert "WRONG" in output


def test_a_limit_is_no_failure_but_has_no_figure(tmp_path: Path) -> None:
    """echo-select refuses clients past FD_SETSIZE by design: a hold past it has no figure,
    and the reason, but the server echoed every byte it took."""
    _built("echo-select")
    p = run("bench", "--builtin", "echo-select", "--mode", "hold", "--seconds", "0.3", "--repeat", "1",
            "--hold", "1500", "--no-plots", "--out", str(tmp_path), timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.loads((tmp_path / "bench.json").read_text())["servers"][0]["modes"]["hold"]
    assert d.get("value") is None and "not served" in d["unavailable"]


@pytest.mark.parametrize("args,message", [
    ([], "say which servers"),
    (["--command", "./srv"], "{port}"),
    (["--target", "nowhere"], "HOST:PORT"),
    (["--builtin", "echo-epoll", "--seconds", "0"], "--seconds"),
])
def test_bad_use_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    p = run("bench", *args, "--out", str(tmp_path), timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert message in p.stderr


def test_connections_the_host_delayed_give_no_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect that took over half a second over loopback was a SYN the host dropped (a full
    connection-tracking table): the connection rate would be the host's, so there is none."""
    import argparse

    from echoconf import benchload
    from echoconf.target import RemoteTarget

    monkeypatch.setattr(benchload, "conntrack_room", lambda needed: None)
    monkeypatch.setattr(benchload, "run_load", lambda args, timeout: (
        {"per_second": 37.0, "slow_connects": 12.0}, "", "connrate ... ok"))
    opts = argparse.Namespace(seconds=0.5, repeat=3, hold=100)
    out = benchload.run_mode(benchload.Server("x", RemoteTarget("127.0.0.1", 7)), "connrate", opts)
    assert out.runs == [] and out.wrong is None
    assert out.unavailable is not None and "12 connections took over 0.5 s" in out.unavailable
