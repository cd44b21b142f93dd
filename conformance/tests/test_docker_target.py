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
from echoconf.fresh_container import neighbour_command  # noqa: E402


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
# nothing about their network differs; else they get a namespace of their own.

TEMPLATE = ["echo-epoll", "--port", "{port}"]
V4 = {"net": {"IPAddress": "10.0.0.2"}}
V6 = {"net": {"IPAddress": "10.0.0.2", "GlobalIPv6Address": "fd00::2"}}


def main(command: list[str] | None, networks: dict[str, dict[str, str]] = V4, holder: bool = True) -> ct.DockerTarget:
    labels = {de.COMMAND_LABEL: json.dumps(command)} if command is not None else {}
    return target(Ctr(labels=labels), Ctr(networks=networks) if holder else None)


@pytest.mark.parametrize("inst", [Fresh(), Fresh(hold_fds=1016), Fresh(restarts=True, ahead=False)],
                         ids=["plain", "hold-fds", "restarts"])
def test_an_instance_with_the_same_network_is_a_neighbour(inst: Fresh) -> None:
    assert neighbour_command(main(TEMPLATE), inst) == TEMPLATE


def test_an_ipv6_instance_is_a_neighbour_of_a_server_on_a_dual_stack_network() -> None:
    inst = Fresh(host="::", shared=True)
    assert neighbour_command(main(TEMPLATE, V6), inst) == TEMPLATE
    assert neighbour_command(main(TEMPLATE, V4), inst) is None


@pytest.mark.parametrize("command", [None, ["echo-epoll", "--port", "7"]], ids=["image-command", "fixed-port"])
def test_a_server_that_cannot_be_told_another_port_has_no_neighbours(command: list[str] | None) -> None:
    assert neighbour_command(main(command), Fresh()) is None


def test_an_instance_with_sysctls_of_its_own_is_not_a_neighbour() -> None:
    assert neighbour_command(main(TEMPLATE), Fresh(sysctls=(("net.ipv4.tcp_wmem", "4096 4096 4096"),))) is None


def test_a_server_without_a_namespace_holder_has_no_neighbours() -> None:
    assert neighbour_command(main(TEMPLATE, holder=False), Fresh()) is None
