"""The fixtures the cases ask for: the case's context, the shared server, its parked
connection, the deaths charged so far, and private server instances (fresh_server).
Loaded by the echoconf plugin (its `pytest_plugins`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import pytest

from .caselib import Ctx, Fresh, declared_instance
from .netns import NetNS, NetnsUnavailable
from .plugin import PRIVATE_KEY, get_run
from .target import HarnessError, OwnedServer, Target


@pytest.fixture
def ctx(request: pytest.FixtureRequest) -> Ctx:
    run = get_run(request.config)
    m = request.node.get_closest_marker("case")
    return Ctx(run.profile, run.seed, frozenset(run.capabilities),
               case_id=m.kwargs["id"] if m else request.node.name)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Target:
    """The shared server under test, restarted first if an earlier case killed it."""
    run = get_run(request.config)
    try:
        t = run.get_target()
        run.shared.revive(t)
    except HarnessError as e:
        if str(e) not in run.harness_errors:
            run.harness_errors.append(f"could not (re)start the server: {e}")
        raise
    run.shared.use(request.node.nodeid)
    return t


@pytest.fixture
def charged_deaths(request: pytest.FixtureRequest) -> list[str]:
    """The ids of the cases charged so far with a death of the shared server."""
    run = get_run(request.config)
    return [nid.split("::", 1)[-1] for nid in run.order
            if (run.results[nid].get("detail") or {}).get("server_died")]


@pytest.fixture
def parked(request: pytest.FixtureRequest, server: Target) -> Any:
    """The case's parked connection (a `Parked`), or None: the case then parks inline."""
    return get_run(request.config).shared.take_parked(request.node.nodeid)


@pytest.fixture
def fresh_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., OwnedServer]]:
    """Start private server instances for cases that perturb the process (signals,
    limits, kills): the one the case declares (`case(fresh=...)`), or a plain one; each is
    stopped at the end of the case."""
    run = get_run(request.config)
    if run.spec is None and run.private is None:
        pytest.skip("needs the harness to own the server process")
    started: list[Any] = []
    request.node.stash[PRIVATE_KEY] = started  # their deaths are charged to the case (makereport)
    namespaces: list[NetNS] = []
    inst = declared_instance(request.node) or Fresh()

    def start(host: str | None = None) -> OwnedServer:
        """`host`: listen there instead of where the case's declaration says."""
        inst_ = dataclasses.replace(inst, host=host) if host else inst
        if run.private is not None:
            from .fresh_container import CannotRun

            try:
                srv: Any = run.private.start(inst_)
            except CannotRun as e:
                pytest.skip(f"cannot run here: {e}")
            started.append(srv)
            return srv
        assert run.spec is not None
        wrap = ns_factory = None
        if inst_.sysctls or inst_.addresses:
            try:
                ns = NetNS(inst_.sysctl_map, inst_.addresses).__enter__()
            except NetnsUnavailable as e:
                pytest.skip(f"could not give the server a network namespace with "
                            f"{', '.join([*inst_.sysctl_map, *inst_.addresses])}: {e}")
            namespaces.append(ns)
            wrap, ns_factory = ns.wrap, ns.socket
        spec = run.spec.with_host(inst_.host) if inst_.host else run.spec
        srv = OwnedServer(spec, hold_fds=inst_.hold_fds, wrap=wrap, factory=ns_factory)
        started.append(srv)
        srv.ensure_running()
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()
            for h in srv.history:
                run.fresh_history.append({"case": request.node.nodeid.split("::", 1)[-1], **h})
        for ns in namespaces:
            ns.delete()
