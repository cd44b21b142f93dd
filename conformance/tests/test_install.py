"""An installed echoconf works from any directory: offline, on Debian 12, with Debian's packages.

Installs a copy of this checkout (conformance/ copied into tmp_path, its build/ reached through a
symlink to the real one, so pip's in-tree build writes nothing into the checkout) into a fresh
`python3 -m venv --system-site-packages` venv and, when pipx is there, with `pipx install
--system-site-packages` (PIPX_HOME and PIPX_BIN_DIR in tmp_path); then runs the installed
`echoconf` from another directory, with no ECHOCONF_* variables: the registry, examples/ and
realworld/ come from the package data, builtin servers from the build of the checkout it was
installed from (PEP 610 direct_url.json). Everything it writes (venvs, pip's and pipx's caches,
temporary files, HOME) is under tmp_path. 18-41 s measured on a shared 2-core machine.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CONFORMANCE = Path(__file__).resolve().parent.parent
REPO = CONFORMANCE.parent
SYSTEM_PYTHON = "/usr/bin/python3"
DEBIAN_WHEELS = Path("/usr/share/python-wheels")  # pip, setuptools, wheel (python3-*-whl)
BUILT = REPO / "build" / "release" / "bin"


@dataclass
class Installed:
    how: str
    echoconf: Path  # the console script
    python: Path  # the interpreter it runs under
    source: Path  # the conformance/ folder it was installed from
    env: dict[str, str]
    cwd: Path  # somewhere else: no checkout, no registry


def _env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECHOCONF_", "PIP_", "PIPX_", "PYTHON", "VIRTUAL_ENV"))}
    home = base / "home"
    home.mkdir(exist_ok=True)
    (base / "tmp").mkdir(exist_ok=True)
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), TMPDIR=str(base / "tmp"),
               PATH="/usr/bin:/bin",  # no echo-epoll on PATH: builtins must come from the checkout
               PIP_NO_INDEX="1", PIP_FIND_LINKS=str(DEBIAN_WHEELS), PIP_CACHE_DIR=str(home / "pip-cache"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(cmd: list[str | Path], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout: conformance/ (symlinks kept) and build/ -> the real build/."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(CONFORMANCE, root / "conformance", symlinks=True,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "*.pyc", ".hypothesis"))
    (root / "build").symlink_to(REPO / "build", target_is_directory=True)
    return root / "conformance"


@pytest.fixture(scope="module", params=["venv", "pipx"])
def installed(request: pytest.FixtureRequest, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp(request.param)
    env = _env(base)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    if request.param == "venv":
        venv = base / "V"
        _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv], env, elsewhere, 120)
        _run([venv / "bin" / "pip", "install", "-q", "--no-build-isolation", source], env, elsewhere, 180)
        return Installed("venv", venv / "bin" / "echoconf", venv / "bin" / "python", source, env, elsewhere)
    if importlib.util.find_spec("pipx") is None:
        pytest.skip("pipx is not installed (Debian package pipx)")
    if not list(DEBIAN_WHEELS.glob("wheel-*.whl")):
        pytest.skip(f"no wheel in {DEBIAN_WHEELS}: offline, pipx needs Debian's python3-wheel-whl")
    env.update(PIPX_HOME=str(base / "pipx"), PIPX_BIN_DIR=str(base / "pipx-bin"))
    _run([SYSTEM_PYTHON, "-m", "pipx", "install", "--system-site-packages", "--pip-args=--no-build-isolation",
          source], env, elsewhere, 240)
    return Installed("pipx", base / "pipx-bin" / "echoconf", base / "pipx" / "venvs" / "echoconf" / "bin" / "python",
                     source, env, elsewhere)


def echoconf(inst: Installed, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run([inst.echoconf, *args], inst.env, inst.cwd, timeout)


def test_version(installed: Installed) -> None:
    import echoconf as pkg  # the checkout's: the one source of the version

    assert echoconf(installed, "--version").stdout.strip() == f"echoconf {pkg.__version__}"


def test_package_data(installed: Installed) -> None:
    """The registry with examples/ and realworld/ beside it, as in the checkout, and pytest.ini."""
    code = ("from echoconf import registry; import echoconf.cases as c, pathlib; "
            "print(registry.default_path()); print(pathlib.Path(c.__file__).parent)")
    reg, cases = map(Path, _run([installed.python, "-c", code], installed.env, installed.cwd, 60).stdout.split())
    assert reg.is_file() and "site-packages" in reg.parts, f"registry not from the package: {reg}"
    assert (cases / "pytest.ini").is_file()
    data = reg.parent
    for folder in ("examples", "realworld"):
        if not (installed.source / folder).is_dir():
            continue
        for f in (installed.source / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                copy = data / f.relative_to(installed.source)
                assert copy.is_file(), f"{copy} is missing from the installed package data"
                assert os.access(copy, os.X_OK) == os.access(f, os.X_OK), f"{copy}: mode not kept"


def test_list(installed: Installed) -> None:
    out = echoconf(installed, "run", "--list").stdout
    assert "echo.basic" in out and "state.machine" in out


def test_impl_from_registry(installed: Installed) -> None:
    p = echoconf(installed, "run", "--impl", "asyncio-example", "--case", "echo.basic")
    assert "passed" in p.stdout and "echo.basic" in p.stdout


def test_builtin_from_source_checkout(installed: Installed) -> None:
    if not (BUILT / "echo-epoll").is_file():
        pytest.skip(f"{BUILT / 'echo-epoll'} is not built: cmake --workflow --preset release")
    where = _run([installed.python, "-c", "from echoconf import registry; print(registry.find_binary('echo-epoll'))"],
                 installed.env, installed.cwd, 60).stdout.strip()
    assert Path(where) == installed.source.parent / "build" / "release" / "bin" / "echo-epoll"
    p = echoconf(installed, "run", "--builtin", "echo-epoll", "--case", "echo.basic")
    assert "passed" in p.stdout and "echo.basic" in p.stdout
