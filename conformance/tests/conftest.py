"""Helpers for the harness's own tests: run the `echoconf` command as users do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
