"""Helpers for the harness's own tests: run the `echoconf` command as users do."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

CONFORMANCE = Path(__file__).resolve().parent.parent
REPO = CONFORMANCE.parent
ECHOCONF = CONFORMANCE / "echoconf"
SERVERS = Path(__file__).resolve().parent / "servers"
EXAMPLE = CONFORMANCE / "examples" / "asyncio_echo.py"

sys.path.insert(0, str(CONFORMANCE / "src"))


def run(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ECHOCONF), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def can_unshare_net() -> bool:
    """A network namespace of one's own can be had: root and unshare(1)."""
    import os
    import shutil

    return os.geteuid() == 0 and shutil.which("unshare") is not None


def run_in_netns(*args: str, setup: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`echoconf ARGS` in a network namespace of its own (can_unshare_net): its loopback up,
    then the shell commands `setup` (sysctls of that namespace); nothing else's traffic there,
    and no connection tracking, which a Docker engine turns on for the host's."""
    script = "ip link set lo up" + (f" && {setup}" if setup else "") + ' && exec "$@"'
    return subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", sys.executable, str(ECHOCONF), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def badecho(bug: str = "none") -> str:
    return f"{sys.executable} {SERVERS / 'badecho.py'} --port {{port}} --bug {bug}"


def example() -> str:
    return f"{sys.executable} {EXAMPLE} --port {{port}}"


def load_report(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "report.json").read_text())


def outcomes(doc: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in doc["cases"]}


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    return tmp_path / "report"


def interrupt_after(args: list[str], marker: str, sig: int, *, env: dict[str, str] | None = None,
                    before: Callable[[str], None] | None = None) -> tuple[int, str, str]:
    """Run `echoconf ARGS`, send it `sig` once a line contains `marker` (after `before(output so
    far)`), and return its exit status, its output up to the marker and the rest (bounded: 60 s
    after the signal). SIGINT is Ctrl-C: restored to its default, which a child of a
    non-interactive shell may inherit ignored."""
    proc = subprocess.Popen([sys.executable, str(ECHOCONF), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    try:
        assert proc.stdout is not None
        for text in proc.stdout:  # bounded by the suite: the marker comes within seconds
            seen.append(text)
            if marker in text:
                break
        if before is not None:
            before("".join(seen))
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen), rest
