"""How the harness watches a server container without asking the engine more than it must, and
where it puts private instances. No engine is needed: the containers are stand-ins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

pytest.importorskip("docker")

from echoconf import container as ct  # noqa: E402
from echoconf import dockerenv as de  # noqa: E402
from echoconf import proctree  # noqa: E402
from echoconf.caselib import Fresh  # noqa: E402
from echoconf import shared_ns  # noqa: E402
from echoconf.fresh_container import placement  # noqa: E402


class Ctr:
    """What DockerTarget uses of a docker container: attrs, reload (counted), id and name."""

    def __init__(self, pid: int = 0, labels: dict[str, str] | None = None,
                 networks: dict[str, dict[str, str]] | None = None) -> None:
        self.id = "0" * 64
        self.name = "stand-in"
        self.pid = pid
        self.reloads = 0
        self.attrs: dict[str, Any] = {
            "State": {}, "Config": {"Labels": labels or {}},
            "NetworkSettings": {"Networks": networks if networks is not None else {"net": {"IPAddress": "10.0.0.2"}}},
        }
        self.reload()
        self.reloads = 0

    def logs(self, **kw: object) -> bytes:
        return b"the last line\n"

    def reload(self) -> None:
        self.reloads += 1
        running = self.pid > 0 and proctree._live(self.pid)
        self.attrs["State"] = {"Status": "running" if running else "exited", "Pid": self.pid if running else 0,
                               "ExitCode": 0 if running else 1, "OOMKilled": False}


def target(ctr: Ctr, holder: Ctr | None = None) -> ct.DockerTarget:
    t = ct.DockerTarget("stand-in", "10.0.0.2", 7)
    t._ctr, t._holder, t._seen = ctr, holder, True
    return t


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[bytes]]:
    """A live process that stands for the container's first one, seen from here."""
    monkeypatch.setattr(ct, "_seen_here", lambda pid, cid: None)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_running_container_is_not_inspected_again_while_its_process_stands(
        process: subprocess.Popen[bytes]) -> None:
    ctr = Ctr(process.pid)
    t = target(ctr)
    for _ in range(50):
        assert t.death() is None
        assert t.session == process.pid
    assert ctr.reloads == 1


def test_a_container_whose_process_ended_is_inspected_and_its_death_told(
        process: subprocess.Popen[bytes]) -> None:
    ctr = Ctr(process.pid)
    t = target(ctr)
    assert t.death() is None
    process.kill()
    process.wait()
    assert "exited with status 1" in (t.death() or ""), t.death()
    assert ctr.reloads == 2


def test_a_container_the_harness_pauses_is_inspected_again(process: subprocess.Popen[bytes]) -> None:
    ctr = Ctr(process.pid)
    ctr.pause = lambda: None  # type: ignore[attr-defined]
    t = target(ctr)
    assert t.alive()
    t.pause()
    assert t.alive()
    assert ctr.reloads == 2


def test_a_container_not_seen_from_here_is_inspected_every_time(process: subprocess.Popen[bytes]) -> None:
    ctr = Ctr(process.pid)
    t = target(ctr)
    t._seen = False
    for _ in range(3):
        assert t.death() is None
    assert ctr.reloads == 3


def test_cgroup_pids_lists_this_process() -> None:
    pids = proctree.cgroup_pids(os.getpid())
    assert pids is None or os.getpid() in pids, pids


# --------------------------------------------------------------------------------------------
# Private instances join the run's server's network namespace on a port of their own where
# nothing about their network differs, else a namespace that the harnesses of the server's lab
# share; a namespace of their own only where their command cannot be told another port.

TEMPLATE = ["echo-epoll", "--port", "{port}"]
V4 = {"net": {"IPAddress": "10.0.0.2"}}
V6 = {"net": {"IPAddress": "10.0.0.2", "GlobalIPv6Address": "fd00::2"}}
TINY = (("net.ipv4.tcp_wmem", "4096 4096 4096"),)
DAD = de.ENV_PROFILES["ipv6"].sysctls


def main(command: list[str] | None, networks: dict[str, dict[str, str]] = V4, holder: bool = True,
         profile: str = "default") -> ct.DockerTarget:
    labels = {de.PROFILE_LABEL: profile, **({de.COMMAND_LABEL: json.dumps(command)} if command is not None else {})}
    ns = Ctr(networks=networks)
    ns.attrs["HostConfig"] = {"Sysctls": de.ENV_PROFILES[profile].sysctls or None}
    return target(Ctr(labels=labels), ns if holder else None)


class Shared:
    """Stands for shared_ns.holder: records what was asked, answers with a holder or None."""

    def __init__(self, answer: Any = "shared holder") -> None:
        self.answer = answer
        self.asked: list[tuple[dict[str, str], bool]] = []

    def __call__(self, beside: Any, sysctls: dict[str, str], ipv6: bool) -> Any:
        self.asked.append((sysctls, ipv6))
        return self.answer


@pytest.mark.parametrize("inst", [Fresh(), Fresh(hold_fds=1016), Fresh(restarts=True, ahead=False)],
                         ids=["plain", "hold-fds", "restarts"])
def test_an_instance_with_the_same_network_is_a_neighbour_of_the_server(inst: Fresh) -> None:
    t, shared = main(TEMPLATE), Shared()
    assert placement(t, inst, shared) == (TEMPLATE, t._holder)
    assert shared.asked == []


def test_an_ipv6_instance_is_a_neighbour_of_a_server_on_a_dual_stack_network() -> None:
    t = main(TEMPLATE, V6)
    assert placement(t, Fresh(host="::", shared=True), Shared()) == (TEMPLATE, t._holder)


def test_an_ipv6_instance_of_a_server_on_an_ipv4_network_shares_a_dual_stack_namespace() -> None:
    shared = Shared()
    assert placement(main(TEMPLATE, V4), Fresh(host="::", shared=True), shared) == (TEMPLATE, "shared holder")
    assert shared.asked == [(DAD, True)]


def test_an_instance_with_sysctls_of_its_own_shares_a_namespace_with_them() -> None:
    shared = Shared()
    assert placement(main(TEMPLATE), Fresh(sysctls=TINY), shared) == (TEMPLATE, "shared holder")
    assert shared.asked == [(dict(TINY), False)]


def test_an_instance_with_the_sysctls_of_the_servers_profile_is_its_neighbour() -> None:
    t = main(TEMPLATE, profile="tiny-buffers")
    assert placement(t, Fresh(sysctls=TINY), Shared()) == (TEMPLATE, t._holder)


def test_a_shared_namespace_keeps_the_servers_profile() -> None:
    shared = Shared()
    placement(main(TEMPLATE, profile="tiny-buffers"), Fresh(host="::", shared=True), shared)
    assert shared.asked == [({**DAD, **de.ENV_PROFILES["tiny-buffers"].sysctls}, True)]


def test_an_instance_has_a_namespace_of_its_own_where_none_is_shared() -> None:
    assert placement(main(TEMPLATE), Fresh(sysctls=TINY), Shared(None)) is None


@pytest.mark.parametrize("command", [None, ["echo-epoll", "--port", "7"]], ids=["image-command", "fixed-port"])
def test_a_server_that_cannot_be_told_another_port_has_no_neighbours(command: list[str] | None) -> None:
    shared = Shared()
    assert placement(main(command), Fresh(), shared) is None
    assert placement(main(command), Fresh(sysctls=TINY), shared) is None
    assert shared.asked == []


def test_a_server_without_a_namespace_holder_has_no_neighbours() -> None:
    assert placement(main(TEMPLATE, holder=False), Fresh(), Shared()) is None


def test_shared_namespaces_are_named_by_their_settings_and_kept_apart_from_the_servers_addresses() -> None:
    assert shared_ns.tag(dict(TINY), False) == shared_ns.tag(dict(TINY), False)
    assert len({shared_ns.tag(dict(TINY), False), shared_ns.tag(dict(TINY), True), shared_ns.tag({}, True)}) == 3
    # The lab's servers take host numbers below the shared holders' (lab._Net.next_addresses).
    assert shared_ns.first_host(256) + shared_ns.SLOTS - 1 < 255
    assert shared_ns.first_host(256) > 128
