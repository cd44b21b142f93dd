"""Network namespaces that the harnesses of one lab share, for private instances whose network
differs from their run's server's (fresh_container).

A cell of the Docker matrix, or one environment profile of `echoconf run --image`, is a child
harness of its own against a server of the parent's `lab.Lab`. Two of its private instances need
a network that the run's server's namespace does not have: partial.tiny-buffers (tcp_wmem and
tcp_rmem of 4 KiB) and the IPv6 cases (a dual-stack network). Each used to get a namespace and a
network of its own: per cell, two container starts that make a namespace (about a CPU-second of
the engine each, with their removal) and two networks. Instead, the first child that needs such
a namespace starts a holder for it in the parent's lab (on its IPv4 or its dual-stack network),
named after the namespace's settings, and every other child of the lab finds it by that name;
their instances join it as neighbours, each on a port of its own block (PORT_BLOCK_LABEL on the
run's server). The parent's `Lab.close` removes it, as `lab.cleanup_stale` does when the parent
is gone.

A run's server needs a namespace of its own only when a fault case cuts its network
(docker.disconnect-reconnect). Without fault cases, and where its command takes `{port}`, it
joins the lab's shared namespace of its environment profile's network too, on the first port of
its block (`Lab.start_server(shared_namespace=True)`): a namespace-making start fewer per cell.
The servers then share an address, so a late UDP answer of one may reach another run's client
on a reused port: the client takes answers only from the port it asked (udpclient.Exchange).

Sharing one namespace changes nothing an instance is judged by: its process, limits and
descriptors are its own, its sockets are told apart by their port, and the settings of the
namespace (sysctls, addresses) are the ones it asked for.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from typing import Any

import docker.errors

from .dockerenv import LABEL, READY_TIMEOUT, SHARED_NS_LABEL, DockerEnvError, start_holder

# Shared holders take the SLOTS host numbers below the top of the lab's subnet, the lab's
# servers from the bottom up (lab._Net), so a holder never takes the address of a server that
# is cut off its network for a moment (docker.disconnect-reconnect).
SLOTS = 32
FIRST_PORT = 20000  # blocks of ports from here up: below the kernel's ephemeral ports
BLOCK_SIZE = 50  # a run starts about ten private instances
BLOCKS = 250  # up to port 32500


def tag(sysctls: dict[str, str], ipv6: bool) -> str:
    """The name of a namespace's settings: equal settings, equal tag."""
    return hashlib.sha256(json.dumps([sorted(sysctls.items()), ipv6]).encode()).hexdigest()[:10]


def _addresses(network: Any, slot: int) -> tuple[str, str | None]:
    """The holder's addresses: host number `first_host(...) + slot` of each subnet of the network."""
    subnets = [ipaddress.ip_network(cfg["Subnet"], strict=False)
               for cfg in (network.attrs.get("IPAM") or {}).get("Config") or [] if cfg.get("Subnet")]
    net4 = next((n for n in subnets if n.version == 4), None)
    if net4 is None:
        raise DockerEnvError(f"network {network.name} has no IPv4 subnet")
    host = first_host(net4.num_addresses) + slot
    net6 = next((n for n in subnets if n.version == 6), None)
    return str(net4.network_address + host), str(net6.network_address + host) if net6 else None


def first_host(addresses: int) -> int:
    """The lowest host number of a shared holder in a subnet of `addresses` addresses; the lab's
    servers take the ones below."""
    return addresses - 2 - SLOTS


def holder(beside: Any, sysctls: dict[str, str], ipv6: bool, timeout: float = READY_TIMEOUT) -> Any | None:
    """A running holder of a network namespace with exactly `sysctls` (on a dual-stack network
    with `ipv6`), shared by the harnesses of the lab that started `beside` (a namespace holder
    of that lab). None when `beside` is no lab's, or its lab has no such network; DockerEnvError
    when the engine fails."""
    cfg = beside.attrs.get("Config") or {}
    return in_lab(beside.client, cfg.get("Labels") or {}, cfg.get("Image"), sysctls, ipv6, timeout)


def in_lab(client: Any, labels: dict[str, str], image: str | None, sysctls: dict[str, str], ipv6: bool,
           timeout: float = READY_TIMEOUT) -> Any | None:
    """As `holder`, for the lab whose containers carry `labels`; a new holder runs `image`."""
    lab_id = labels.get(f"{LABEL}.lab")
    if not lab_id:
        return None
    try:
        network = client.networks.get(f"echoconf-{lab_id}-{'v6' if ipv6 else 'v4'}")
    except docker.errors.NotFound:
        return None
    t = tag(sysctls, ipv6)
    name = f"echoconf-{lab_id}-shared-ns-{t}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            ctr = client.containers.get(name)
        except docker.errors.NotFound:
            try:
                return _start(client, network, name, image, sysctls, labels, t)
            except docker.errors.APIError as e:
                # 409: another harness of the lab made it first. The engine reserves the name
                # before the container can be looked up: look again until it can.
                if e.status_code != 409:
                    raise DockerEnvError(f"cannot start the shared namespace holder {name}: {e}") from e
                ctr = None
        state = (ctr.attrs.get("State") or {}) if ctr is not None else {}
        if state.get("Running"):
            return ctr
        if state.get("Status") in ("exited", "dead"):
            raise DockerEnvError(f"the shared namespace holder {name} is {state['Status']}")
        if time.monotonic() > deadline:
            raise DockerEnvError(f"the shared namespace holder {name} did not start within {timeout:.0f}s")
        time.sleep(0.05)


def block_ports(block: int) -> range:
    """The ports of a lab's server's block: the server's own first, when it shares a namespace,
    then its private instances'. Blocks lie apart, for neighbours of different servers may
    share a namespace."""
    first = FIRST_PORT + block % BLOCKS * BLOCK_SIZE
    return range(first, first + BLOCK_SIZE)


def _start(client: Any, network: Any, name: str, image: str | None, sysctls: dict[str, str],
           labels: dict[str, str], t: str) -> Any:
    keep = {k: v for k, v in labels.items() if k in (f"{LABEL}.lab", f"{LABEL}.host", f"{LABEL}.pid")}
    return start_holder(client, image, name, network.name, _addresses(network, int(t, 16) % SLOTS), sysctls,
                        {**keep, SHARED_NS_LABEL: t}, f"shared-{t}")
