"""The benchmark regression guard: a short `echoconf bench` of every reference server beside
echo-baseline (a minimal epoll echo, tools/echo-baseline.c), measured in one run, asserting
ratios, never times. A server that falls behind a textbook echo server has regressed, whatever
the machine's speed.

The floor comes from the measured spread. Six runs of this very bench on the project's 2-core
machine (three before echo_stream's buffer-less wait, three after) gave, over the five reference
servers: stream 0.78 to 2.12, ping-pong 0.78 to 1.25, connection rate 0.82 to 1.36; echo-threaded's
connection rate 0.75 to 0.76 before that wait and 0.65 to 0.70 after (a thread made per
connection, and the wait's peek, are its design's price). So the floor is 0.7, and 0.5 for
echo-threaded's connection rate. A slow but correct server, socat with cat behind it, is
measured in the same run and must fall below it: the guard can fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import can_unshare_net, run, run_in_netns
from echoconf import registry

pytestmark = [pytest.mark.skipif(registry.find_binary("echo-baseline") is None,
                                 reason=f"echo-baseline not built: {registry.BUILD_HINT}"),
              pytest.mark.timeout(600)]

MODES = ["stream", "pingpong", "connrate"]
FLOOR = 0.7
FLOORS = {("echo-threaded", "connrate"): 0.5}
SLOW = "socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork EXEC:cat"


def _below(doc: dict) -> dict[str, list[str]]:
    """Per server (but the baseline), the modes whose ratio to the baseline is under its floor,
    or that have no figure."""
    out: dict[str, list[str]] = {}
    for s in doc["servers"][1:]:
        for mode in MODES:
            d = s["modes"][mode]
            floor = FLOORS.get((s["name"], mode), FLOOR)
            if d.get("to_first") is None or d["to_first"] < floor:
                out.setdefault(s["name"], []).append(f"{mode} {d.get('to_first')} < {floor}")
    return out


def test_reference_servers_keep_pace_with_a_minimal_epoll_echo(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat (the slow control server) is not installed")
    refs = [i.builtin for i in registry.references() if i.builtin]
    missing = [n for n in refs if registry.find_binary(n) is None]
    if missing:
        pytest.skip(f"{missing} not built: {registry.BUILD_HINT}")
    args = ["bench", "--baseline", "--builtin", "all", "--command", SLOW, "--seconds", "0.5", "--repeat", "3",
            "--no-plots", "--out", str(tmp_path)]
    for m in MODES:
        args += ["--mode", m]
    if can_unshare_net():
        # No connection tracking there, which drops SYNs once full, and no other traffic.
        p = run_in_netns(*args, timeout=500)
    else:
        p = run(*args, timeout=500)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert [s["name"] for s in doc["servers"]] == ["echo-baseline", *refs, "socat"]
    below = _below(doc)
    assert "socat" in below, f"the slow control server met the floor: the guard cannot fail\n{p.stdout}"
    del below["socat"]
    assert not below, f"reference servers behind echo-baseline: {below}\n{p.stdout}"
