"""The implementations registry (conformance/implementations.toml).

Schema (version 1):

    [NAME]                          # a reference or third-party implementation
    builtin = "echo-epoll"          # exactly one of builtin / command / target
    command = "{python} {conformance}/examples/asyncio_echo.py --port {port}"
    target = "127.0.0.1:7007"
    capabilities = ["concurrent", "ipv6"]   # and "udp": it serves UDP echo too
    transport = "udp"               # optional: tcp, udp or both (default: both with udp, else tcp)
    description = "..."             # optional
    [NAME.expected-failures]        # case id -> reason; a pass becomes XPASS = failure
    "robust.fd-setsize" = "select() cannot watch fds >= 1024; it closes them"

    [broken.NAME]                   # a deliberately broken server (meta-test only)
    builtin = "broken-NAME"         # or command = ...
    capabilities = ["concurrent"]
    fm = ["FM-05"]                  # optional: the failure mode it plants
    must-fail = ["close.half-close-flush"]   # must fail here, deterministically

A broken server must fail every must-fail case and nothing else, in every run. There is no
"may fail": a failure that shows only in some runs is a bug to fix in the server or the case.

In a command, `{python}` is the interpreter running echoconf and `{conformance}` the folder
holding the registry file, so an entry works from any directory and from an installed echoconf;
`{port}` is left for the harness.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
import sys
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CAPABILITIES = ("concurrent", "ipv6", "udp")
TRANSPORTS = ("tcp", "udp", "both")
HERE = Path(__file__).resolve().parent
CONFORMANCE = HERE.parent.parent  # conformance/ in a checkout (src layout)
# The registry with examples/ and realworld/ beside it: symlinks into conformance/ in a checkout,
# copies (package data) in an installed echoconf.
DATA = HERE / "data"


class RegistryError(ValueError):
    pass


@dataclass
class Implementation:
    name: str
    builtin: str | None = None
    command: str | None = None
    target: str | None = None
    capabilities: list[str] = field(default_factory=list)
    transport: str = "tcp"  # what the run tests: "udp" and "both" imply the udp capability
    expected_failures: dict[str, str] = field(default_factory=dict)
    broken: bool = False
    must_fail: list[str] = field(default_factory=list)
    # A broken server whose bug is a race (it shows wherever the client falls behind for a
    # moment, by chance): the meta-test runs only these cases, the ones built to force it.
    judged_on: list[str] = field(default_factory=list)
    fm: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def key(self) -> str:
        return f"broken.{self.name}" if self.broken else self.name


def default_path() -> Path:
    """$ECHOCONF_REGISTRY, else conformance/implementations.toml of the checkout echoconf runs
    from, else the copy installed with the package (echoconf/data/implementations.toml)."""
    env = os.environ.get("ECHOCONF_REGISTRY")
    if env:
        return Path(env)
    checkout = CONFORMANCE / "implementations.toml"
    return checkout if checkout.is_file() else DATA / "implementations.toml"


BUILD_HINT = "build the servers first: cmake --workflow --preset release"


def in_checkout() -> bool:
    """True when this echoconf runs from a source checkout (conformance/src/echoconf)."""
    return HERE.parent.name == "src" and (CONFORMANCE / "pyproject.toml").is_file()


def installed_from() -> Path | None:
    """The local folder this installed echoconf was pip-installed from (conformance/ of a
    checkout), read from the distribution's PEP 610 direct_url.json; None when it runs from a
    checkout, was installed from an archive or an index, or that folder is gone."""
    try:
        dist = importlib.metadata.distribution("echoconf")
        # the distribution found first on sys.path must be the code running, not another copy
        if Path(dist.locate_file("echoconf")).resolve() != HERE:
            return None
        info = json.loads(dist.read_text("direct_url.json") or "null")
    except (importlib.metadata.PackageNotFoundError, OSError, ValueError):
        return None
    if not isinstance(info, dict) or "dir_info" not in info or not isinstance(info.get("url"), str):
        return None
    url = urllib.parse.urlsplit(info["url"])
    if url.scheme != "file" or url.netloc not in ("", "localhost"):
        return None
    path = Path(urllib.request.url2pathname(url.path))
    return path if path.is_dir() else None


def repo_roots() -> list[Path]:
    """Checkouts whose build/ may hold the servers: the one this echoconf was installed from,
    the one it runs from, then the current directory."""
    roots = []
    source = installed_from()
    if source is not None:
        roots.append(source.parent)  # pip installs conformance/; the build is beside it
    if in_checkout():
        roots.append(CONFORMANCE.parent)
    roots.append(Path.cwd())
    return list(dict.fromkeys(roots))


def bin_dirs() -> list[Path]:
    """Where builtin servers are looked up: $ECHOCONF_BIN_DIR alone when set, else build/release/bin
    then build/dev/bin of each of repo_roots() (find_binary then tries PATH)."""
    env = os.environ.get("ECHOCONF_BIN_DIR")
    if env:
        return [Path(env)]
    return [root / "build" / preset / "bin" for root in repo_roots() for preset in ("release", "dev")]


def find_binary(name: str) -> Path | None:
    for d in bin_dirs():
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    if not os.environ.get("ECHOCONF_BIN_DIR") and os.sep not in name:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def capability_flags(capabilities: list[str]) -> list[str]:
    """`echoconf run` arguments declaring exactly these capabilities: none assumed (--target's
    default, concurrent, is denied when not listed)."""
    return ([a for c in capabilities for a in ("--capability", c)]
            + [a for c in CAPABILITIES if c not in capabilities for a in ("--without", c)])


def expand(command: str, registry_dir: Path) -> str:
    """Fill the registry's placeholders (not `{port}`: that one is the harness's)."""
    return (command.replace("{python}", shlex.quote(sys.executable))
            .replace("{conformance}", shlex.quote(str(registry_dir))))


def _entry(name: str, table: dict, broken: bool, registry_dir: Path) -> Implementation:
    where = f"[{'broken.' if broken else ''}{name}]"
    sources = [k for k in ("builtin", "command", "target") if k in table]
    if len(sources) != 1:
        raise RegistryError(f"{where}: give exactly one of builtin, command, target")
    caps = table.get("capabilities", [])
    unknown = [c for c in caps if c not in CAPABILITIES]
    if unknown:
        raise RegistryError(f"{where}: unknown capabilities {unknown} (known: {list(CAPABILITIES)})")
    allowed = {"builtin", "command", "target", "capabilities", "transport", "expected-failures",
               "description", "must-fail", "judged-on", "fm"}
    extra = set(table) - allowed
    if "may-fail" in extra:
        raise RegistryError(f"{where}: may-fail is not supported: a broken server fails exactly its "
                            "must-fail cases in every run; make a scheduling-dependent bug show "
                            "deterministically instead")
    if extra:
        raise RegistryError(f"{where}: unknown keys {sorted(extra)}")
    if not broken and ("must-fail" in table or "judged-on" in table):
        raise RegistryError(f"{where}: must-fail and judged-on belong in [broken.*] entries")
    outside = [c for c in table.get("must-fail", []) if "judged-on" in table and c not in table["judged-on"]]
    if outside:
        raise RegistryError(f"{where}: must-fail cases {outside} are not among judged-on")
    transport = table.get("transport", "both" if "udp" in caps else "tcp")
    if transport not in TRANSPORTS:
        raise RegistryError(f"{where}: transport must be one of {list(TRANSPORTS)}, got {transport!r}")
    impl = Implementation(
        name=name, builtin=table.get("builtin"), transport=transport,
        command=expand(table["command"], registry_dir) if "command" in table else None,
        target=table.get("target"), capabilities=list(caps),
        expected_failures=dict(table.get("expected-failures", {})), broken=broken,
        must_fail=list(table.get("must-fail", [])), judged_on=list(table.get("judged-on", [])),
        fm=list(table.get("fm", [])), description=table.get("description", ""))
    if broken and not impl.must_fail:
        raise RegistryError(f"{where}: a broken server needs a non-empty must-fail list")
    return impl


def load(path: Path | None = None) -> dict[str, Implementation]:
    """All entries keyed by name; broken ones as `broken.NAME`."""
    path = path or default_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise RegistryError(f"registry not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"{path}: {e}") from None
    out: dict[str, Implementation] = {}
    for name, table in data.items():
        if name == "broken":
            for bname, btable in table.items():
                out[f"broken.{bname}"] = _entry(bname, btable, True, path.resolve().parent)
        elif isinstance(table, dict):
            out[name] = _entry(name, table, False, path.resolve().parent)
    return out


def find(name: str, path: Path | None = None) -> Implementation:
    reg = load(path)
    if name in reg:
        return reg[name]
    if name.startswith("broken-") and f"broken.{name[7:]}" in reg:
        return reg[f"broken.{name[7:]}"]
    raise RegistryError(f"no implementation {name!r} in the registry (known: {', '.join(reg)})")


def by_builtin(builtin: str, path: Path | None = None) -> Implementation | None:
    try:
        reg = load(path)
    except RegistryError:
        return None
    for impl in reg.values():
        if impl.builtin == builtin:
            return impl
    return None


def references(path: Path | None = None) -> list[Implementation]:
    return [i for i in load(path).values() if not i.broken and i.builtin]


def broken(path: Path | None = None) -> list[Implementation]:
    return [i for i in load(path).values() if i.broken]
