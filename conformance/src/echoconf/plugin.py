"""The echoconf pytest plugin: options, markers, verdict bookkeeping, output.

Load it with `-p echoconf.plugin` and point pytest at the `echoconf.cases` package (the
`echoconf` command does both). Each collected test is one case (marker `case`), reported
under its case id; junit names are case ids too. The cases' fixtures are in `fixtures.py`,
which this plugin loads.
"""

from __future__ import annotations

import fnmatch
import importlib
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings

from . import client, pathscale, registry, report
from .caselib import FAMILIES, PROFILES, Ctx, declared_instance
from .container import DockerTarget
from .oracle import CaseFailure
from .shared import SharedServer
from .target import HarnessError, OwnedServer, RemoteTarget, ServerSpec, Target

pytest_plugins = ["echoconf.fixtures"]

DEFAULT_SEED = 862
# Exceptions that are the harness's own bugs, never the server's doing: the case is an error and
# the run a harness error (exit 2), never a failed case. The cases judge the server only through
# CaseFailure (oracle.fail, StreamCheck); a socket error they let through is the server's.
HARNESS_BUGS = (AttributeError, NameError, TypeError, ImportError, LookupError, AssertionError,
                ZeroDivisionError)
_HC = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
       HealthCheck.function_scoped_fixture]
for _name, _prof in PROFILES.items():
    settings.register_profile(f"echoconf-{_name}", deadline=None, database=None,
                              max_examples=_prof.chunking_examples, suppress_health_check=_HC,
                              print_blob=False, derandomize=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("echoconf", "echoconf conformance run")
    g.addoption("--echoconf-command", help="start this server; {port} is substituted")
    g.addoption("--echoconf-target", help="HOST:PORT of a running server")
    g.addoption("--echoconf-container", help="with --echoconf-target: the Docker container serving it, "
                "watched for deaths and restarted (echoconf run --image passes it)")
    g.addoption("--echoconf-faults", action="store_true",
                help="with --echoconf-container: run the docker.* fault cases (pause, network cut, kill)")
    g.addoption("--echoconf-first-start", type=float, default=None,
                help="with --echoconf-container: seconds the container took to listen at its first start")
    g.addoption("--echoconf-replay-as", help="with --echoconf-container: how the user named the server "
                "(`--image IMAGE --port N ...`), for the replay line (echoconf run --image passes it)")
    g.addoption("--echoconf-builtin", help="a server binary name from build/<preset>/bin")
    g.addoption("--echoconf-impl", help="an implementation from the registry")
    g.addoption("--echoconf-registry", help="path of implementations.toml")
    g.addoption("--echoconf-capability", action="append", default=[],
                help="declare a capability (concurrent, ipv6)")
    g.addoption("--echoconf-without", action="append", default=[], help="remove a capability")
    g.addoption("--echoconf-transport", default=None, choices=list(registry.TRANSPORTS),
                help="what the server serves: tcp (default), udp (only the udp family runs), both")
    g.addoption("--echoconf-xfail", action="append", default=[],
                help="CASE=REASON: an expected failure")
    g.addoption("--echoconf-profile", default="default", choices=sorted(PROFILES))
    g.addoption("--echoconf-seed", type=int, default=None)
    g.addoption("--echoconf-hang-bound", type=float, default=None,
                help="end a stream on which nothing moves for this many seconds as a timeout")
    g.addoption("--echoconf-report", help="directory for report.json and report.md")
    g.addoption("--echoconf-time-scale", default=None,
                help="multiply every network deadline by this factor (>= 1); default: 1, or "
                     "measured for a --target not on loopback")
    g.addoption("--echoconf-ipv6-target", default=None,
                help="HOST:PORT where robust.ipv6 reaches the --target server over IPv6")
    g.addoption("--echoconf-case", action="append", default=[], help="glob on case ids")
    g.addoption("--echoconf-level", action="append", default=[], help="rfc862, derived, robust")
    g.addoption("--echoconf-list", action="store_true", help="list the cases and exit")
    g.addoption("--echoconf-strict", action="store_true",
                help="a failed SHOULD case fails the run too (exit 1)")
    g.addoption("--echoconf-no-summary", action="store_true", help="no summary table at the end")
    g.addoption("--echoconf-pytest-output", action="store_true",
                help="keep pytest's own terminal output")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in ("case(id, level, requirement, fm): declares a conformance case",
                 "needs(capability): the case needs an implementation capability",
                 "owned: the case needs the harness to see the server's processes, or to start "
                 "private instances of it (fixture fresh_server)",
                 "parks(fn, rank): the case's connection may wait while private-server cases run",
                 "fresh(instance): the private server instance the case starts (fixture fresh_server)",
                 "docker: the case is about the server's container (--image)",
                 "faults: the case freezes, cuts off or kills the server container (--faults)",
                 "bound(fn): the case's hard bound (pytest-timeout) as a function of the profile"):
        config.addinivalue_line("markers", line)
    if config.option.collectonly or getattr(config.option, "help", False):
        return
    run = EchoconfRun(config)
    config.stash[RUN_KEY] = run
    config.pluginmanager.register(run, "echoconf-run")
    if run.console is not None or run.list_only:
        # The per-case lines and the summary replace pytest's own progress output.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


RUN_KEY = pytest.StashKey["EchoconfRun"]()


def get_run(config: pytest.Config) -> "EchoconfRun":
    return config.stash[RUN_KEY]


class EchoconfRun:
    """State of one conformance run, registered as a plugin object."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.option
        self.profile = PROFILES[opt.echoconf_profile]
        self.hang_bound: float | None = opt.echoconf_hang_bound
        client.HANG_BOUND = self.hang_bound
        self.seed = opt.echoconf_seed if opt.echoconf_seed is not None else DEFAULT_SEED
        self.report_dir = Path(opt.echoconf_report) if opt.echoconf_report else None
        self.list_only = opt.echoconf_list
        self.strict: bool = opt.echoconf_strict
        self.results: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.interrupted: list[str] = []  # the cases under way when the run was interrupted
        self.harness_errors: list[str] = []
        self.target: Target | None = None
        self.fresh_history: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.impl: registry.Implementation | None = None
        self.spec: ServerSpec | None = None
        self.capabilities: set[str] = set()
        self.expected: dict[str, str] = {}
        self.console: Any = None
        self.target_desc: dict[str, Any] | None = None
        self.catalogue: list[str] = []  # node ids in catalogue order (reports use it)
        self.shared = SharedServer(self)
        self.private: Any = None  # fresh_container.FreshContainers under --image
        self._configure_target(opt)
        self.time_scale: dict[str, Any] = pathscale.setup(self, opt)  # see pathscale.py
        settings.load_profile(f"echoconf-{self.profile.name}")
        try:
            import hypothesis.core

            hypothesis.core.global_force_seed = self.seed  # what --hypothesis-seed does
        except (ImportError, AttributeError):
            pass
        if not opt.echoconf_pytest_output and not self.list_only:
            from rich.console import Console

            self.console = Console(highlight=False, soft_wrap=True)

    # -- configuration -----------------------------------------------------------------
    def _configure_target(self, opt: Any) -> None:
        reg_path = Path(opt.echoconf_registry) if opt.echoconf_registry else None
        impl = None
        if opt.echoconf_impl:
            impl = registry.find(opt.echoconf_impl, reg_path)
        elif opt.echoconf_builtin:
            impl = registry.by_builtin(opt.echoconf_builtin, reg_path)
        self.impl = impl
        command = opt.echoconf_command or (impl.command if impl and not opt.echoconf_builtin else None)
        builtin = opt.echoconf_builtin or (impl.builtin if impl else None)
        target = opt.echoconf_target or (impl.target if impl else None)
        if impl:
            self.capabilities = set(impl.capabilities)
            if not impl.broken:
                self.expected = dict(impl.expected_failures)
        elif opt.echoconf_command or opt.echoconf_target:
            self.capabilities = {"concurrent"}
        else:
            self.capabilities = {"concurrent", "ipv6"}
        self.capabilities |= set(opt.echoconf_capability)
        self.capabilities -= set(opt.echoconf_without)
        self.transport = opt.echoconf_transport or (impl.transport if impl else
                                                    "both" if "udp" in self.capabilities else "tcp")
        if self.transport != "tcp":
            self.capabilities.add("udp")
        for item in opt.echoconf_xfail:
            cid, _, reason = item.partition("=")
            self.expected[cid] = reason or "expected failure"
        if command:
            self.spec = ServerSpec.from_command(command)
        elif builtin:
            path = registry.find_binary(builtin)
            if path is None and not self.list_only:
                raise pytest.UsageError(f"server binary {builtin} not found in "
                                        f"{', '.join(map(str, registry.bin_dirs()))}: "
                                        f"{registry.BUILD_HINT}")
            self.spec = ServerSpec.from_builtin(str(path or builtin))
        elif target:
            host, _, port = target.rpartition(":")
            if not host or not port.isdigit():
                raise pytest.UsageError(f"--target wants HOST:PORT, got {target!r}")
            if opt.echoconf_container:
                # Imported now, not on first use: an interruption (Ctrl-C, SIGTERM) in the middle
                # of a lazy import leaves it half made, and the report could not be written.
                importlib.import_module(".dockerenv", __package__)
                from .fresh_container import FreshContainers

                self.remote = DockerTarget(opt.echoconf_container, host.strip("[]"), int(port),
                                           first_start=opt.echoconf_first_start, udp=self.transport == "udp")
                self.private = FreshContainers(self.remote)
            else:
                self.remote = RemoteTarget(host.strip("[]"), int(port))
        elif not self.list_only:
            raise pytest.UsageError("say which server to test: --command, --target, --builtin or --impl")
        if self.spec is not None:
            self.spec.tcp = self.transport != "udp"

    def label(self) -> str:
        if self.impl:
            return self.impl.key
        if self.spec:
            return self.spec.label
        return getattr(self, "remote", None).name if hasattr(self, "remote") else "?"

    def get_target(self) -> Target:
        if self.target is None:
            if self.harness_errors:
                raise HarnessError(self.harness_errors[0])
            t: Target = OwnedServer(self.spec) if self.spec else self.remote
            try:
                t.ensure_running()
            except HarnessError as e:
                self.harness_errors.append(str(e))
                raise
            self.target = t
        return self.target

    # -- collection ----------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        opt = config.option
        keep, drop = [], []
        for item in items:
            m = item.get_closest_marker("case")
            if m is None:
                drop.append(item)
                continue
            cid, level = m.kwargs["id"], m.kwargs["level"]
            if opt.echoconf_case and not any(fnmatch.fnmatchcase(cid, p) for p in opt.echoconf_case):
                drop.append(item)
                continue
            if opt.echoconf_level and level not in opt.echoconf_level:
                drop.append(item)
                continue
            if self.transport == "udp" and not cid.startswith("udp.") and not self.list_only:
                drop.append(item)  # a UDP-only server: the TCP cases do not apply
                continue
            bound = item.get_closest_marker("bound")
            if bound is not None:
                item.add_marker(pytest.mark.timeout(bound.args[0](self.profile)))
            family = cid.split(".", 1)[0]
            # junit and pytest's own output name the case by its id.
            item._nodeid = f"{family}::{cid}"
            item.user_properties += [("case_id", cid), ("level", level),
                                     ("requirement", m.kwargs["requirement"])]
            if cid in self.expected:
                item.add_marker(pytest.mark.xfail(reason=self.expected[cid], strict=False))
            keep.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        order = {f: i for i, f in enumerate(FAMILIES)}
        keep.sort(key=lambda it: order.get(it.nodeid.split("::", 1)[0], len(order)))
        self.catalogue = [it.nodeid for it in keep]
        if self.list_only:
            self._print_list(keep)
            items[:] = keep
            return
        # Parked connections wait while the cases on private instances run: local processes,
        # or containers of the image (--image).
        owned = self.spec is not None or self.private is not None
        items[:] = self.shared.order(keep, self.capabilities) if owned else keep
        if self.private is not None:
            # Under --image a private instance takes seconds to start: the declared ones start
            # in the background now, in the order their cases will run.
            self.private.prepare([inst for it in items if (inst := declared_instance(it)) is not None
                                  and inst.ahead and self.skip_reason(it) is None])

    def _print_list(self, items: list[pytest.Item]) -> None:
        rows = []
        for item in items:
            m = item.get_closest_marker("case")
            assert m is not None
            tags = [f"needs {n.args[0]}" for n in item.iter_markers("needs")]
            for tag in ("owned", "docker", "faults"):
                if item.get_closest_marker(tag):
                    tags.append(tag)
            rows.append((m.kwargs["id"], m.kwargs["level"], m.kwargs["requirement"], tags,
                         m.kwargs.get("fm", []), m.kwargs["grade"], m.kwargs["why"]))
        with self.terminal():
            for cid, level, req, tags, fm, grade, why in rows:
                extra = f" [{', '.join(tags)}]" if tags else ""
                print(f"{cid:28} {level:8} {grade.upper():6} {req}{extra}"
                      + (f" ({', '.join(fm)})" if fm else ""))
                print(f"{'':28} {'':8} {'':6} why {grade.upper()}: {why}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if self.list_only:
            return True  # listing only: run nothing
        return None

    # -- running ---------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.nodeid == self.shared.park_before and self.shared.to_park:
            self.shared.park_all(lambda cid: Ctx(self.profile, self.seed, frozenset(self.capabilities),
                                                 case_id=cid))
        why = self.skip_reason(item)
        if why:
            pytest.skip(why)

    def skip_reason(self, item: pytest.Item) -> str | None:
        """Why this run cannot run the case, or None."""
        for m in item.iter_markers("needs"):
            cap = m.args[0]
            if cap not in self.capabilities:
                return f"needs capability '{cap}', which {self.label()} does not declare"
        if item.get_closest_marker("docker") and not isinstance(getattr(self, "remote", None), DockerTarget):
            return ("needs the server in a container that the harness runs (--image); this run's "
                    "server is not")
        if item.get_closest_marker("faults") and not self.config.option.echoconf_faults:
            return ("fault injection not asked for (--faults): it freezes, cuts off and kills the "
                    "server container")
        if item.get_closest_marker("owned") and self.spec is None:
            if "fresh_server" in item.fixturenames:
                if self.private is None:
                    return ("needs private instances of the server, which the harness starts for "
                            "--command, --builtin, --impl or --image; a --target server can only be "
                            "connected to")
                why = self.private.unavailable()
                if why:
                    return f"needs private instances of the server image: {why}"
            remote = getattr(self, "remote", None)
            if remote is None or not remote.observable:
                return ("needs to see the server's processes (--command, --builtin, --impl, or "
                        "--image with the harness on the Docker host); a --target server can only "
                        "be connected to")
        return None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        rep: pytest.TestReport = outcome.get_result()
        detail: dict[str, Any] | None = None
        exc = call.excinfo.value if call.excinfo is not None else None
        if isinstance(exc, CaseFailure):
            detail = dict(exc.detail)
        elif isinstance(exc, HarnessError):
            detail = {"message": f"harness error: {exc}", "harness_error": True}
        elif isinstance(exc, HARNESS_BUGS):
            detail = {"message": f"harness error: {type(exc).__name__}: {exc} (a bug in echoconf, not in the "
                                 "server under test)", "harness_error": True}
        elif isinstance(exc, OSError) and call.excinfo is not None:
            detail = {"message": _socket_error(call.excinfo)}
        if call.when == "call" and self.target is not None and "server" in item.fixturenames:
            # Only a case on the shared server is charged with its death (see shared.py).
            lost = self.shared.lost.pop(item.nodeid, None)
            died = self.target.death(grace=0.3 if rep.failed or hasattr(rep, "wasxfail") else 0.0)
            if lost or died:
                self._server_died(item, rep, lost or died, detail, parked=lost is not None)
                detail = rep.echoconf_detail  # type: ignore[attr-defined]
            self.shared.charged = died
        if call.when == "call" and exc is not None and not isinstance(exc, CaseFailure) \
                and "server_died" not in (detail or {}):
            # A symptom the case did not explain (a refused connection, say) on a private
            # instance that died is that death, as on the shared server. A CaseFailure is the
            # case's own verdict and says what it saw (robust.restart-rebind's instance that
            # cannot bind again exits: a SHOULD failure, not a death). A passed case is never
            # charged: no later case looks at its instance, so a death after its last check
            # would be seen or not as the scheduler went.
            for srv in item.stash.get(PRIVATE_KEY, []):
                died = srv.death(grace=0.3)
                if died:
                    self._server_died(item, rep, died, detail)
                    detail = rep.echoconf_detail  # type: ignore[attr-defined]
                    break
        if detail is not None:
            rep.echoconf_detail = detail  # type: ignore[attr-defined]
        if rep.failed and (detail or {}).get("harness_error") and "server_died" not in detail:
            # The harness could not judge: no verdict on the server, and the run says so (exit 2).
            rep.echoconf_harness_error = True  # type: ignore[attr-defined]
            self.harness_errors.append(f"{item.nodeid.split('::', 1)[-1]}: {detail['message']}")
            return
        if (call.when == "call" and rep.failed and not self.strict
                and _grade(item) == "should" and "server_died" not in (detail or {})):
            self._recommendation(rep, detail)

    def _recommendation(self, rep: pytest.TestReport, detail: dict[str, Any] | None) -> None:
        """A failed SHOULD case: a recommendation not met, not a conformance failure. JUnit
        shows it the way pytest shows an expected failure (<skipped type="pytest.xfail">,
        with the message), so CI dashboards agree with the exit status."""
        msg = (detail or {}).get("message") or _first_line(rep.longreprtext)
        rep.echoconf_detail = {**(detail or {"message": msg})}  # type: ignore[attr-defined]
        rep.echoconf_should_failed = True  # type: ignore[attr-defined]
        rep.outcome = "skipped"
        rep.wasxfail = f"SHOULD, recommendation not met: {msg}"  # type: ignore[attr-defined]

    def _server_died(self, item: pytest.Item, rep: pytest.TestReport, died: str,
                     detail: dict[str, Any] | None, parked: bool = False) -> None:
        was = (detail or {}).get("message") or (_first_line(rep.longreprtext) if rep.failed else "")
        if parked:
            msg = (f"The server died while this case's connection was parked (open and waiting while "
                   f"the cases on private instances ran), so the connection was lost: {died}.")
        elif rep.passed:
            # Its checks were all met: the same words as when the death is found before the
            # next case (SharedServer.blame_previous), whichever look saw it first.
            msg = f"The server died at the end of this case: {died}."
        else:
            msg = f"The server died during this case: {died}."
        if "SIGPIPE" in died:
            msg += " Writing to a connection the client had reset raised SIGPIPE (FM-07)."
        new = {**(detail or {}), "message": msg, "server_died": died}
        if was:
            new["observed_failure"] = was
        if hasattr(rep, "wasxfail"):
            # A death is never an expected failure: the registry may excuse a symptom, not
            # a server that stops serving everyone.
            new["expected_failure"] = rep.wasxfail
            new["message"] = msg + (f" The case is registered as an expected failure "
                                    f"({rep.wasxfail}), but a death is always a failure.")
            del rep.wasxfail
        rep.outcome = "failed"
        rep.longrepr = new["message"] + (f"\n(the case saw: {was})" if was else "")
        rep.echoconf_detail = new  # type: ignore[attr-defined]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nid = report.nodeid
        if nid not in self.results:
            self.order.append(nid)
            self.results[nid] = {"outcome": None, "duration": 0.0, "detail": None}
        r = self.results[nid]
        r["duration"] += report.duration
        d = getattr(report, "echoconf_detail", None)
        if report.when == "setup":
            if report.skipped:
                r["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
                r["detail"] = {"message": _skip_reason(report)}
            elif report.failed:
                r["outcome"] = "error"
                r["detail"] = d or {"message": _first_line(report.longreprtext)}
        elif report.when == "call":
            if getattr(report, "echoconf_harness_error", False):
                r["outcome"] = "error"
                r["detail"] = d
            elif getattr(report, "echoconf_should_failed", False):
                r["outcome"] = "failed"
                r["detail"] = d
            elif hasattr(report, "wasxfail"):
                if report.skipped:
                    r["outcome"] = "xfailed"
                    r["detail"] = d or {"message": _first_line(report.longreprtext)}
                    r["detail"]["expected_failure"] = report.wasxfail
                else:
                    r["outcome"] = "xpassed"
                    r["detail"] = {"message": "This case was registered as an expected failure "
                                   f"({report.wasxfail}) but it passed: update the registry."}
            elif report.passed:
                r["outcome"] = "passed"
            elif report.skipped:
                r["outcome"] = "skipped"
                r["detail"] = {"message": _skip_reason(report)}
            else:
                r["outcome"] = "failed"
                r["detail"] = d or _generic_detail(report)
        elif report.when == "teardown":
            if report.failed and r["outcome"] in ("passed", None):
                r["outcome"] = "error"
                r["detail"] = d or {"message": _first_line(report.longreprtext)}
            self.print_case(nid)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.harness_errors.append(f"collection failed: {report.nodeid}: "
                                       f"{_first_line(report.longreprtext)}")
            with self.terminal():
                print(report.longreprtext)

    # -- output --------------------------------------------------------------------------
    @contextmanager
    def terminal(self) -> Iterator[None]:
        capman = self.config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            with capman.global_and_fixture_disabled():
                yield
        else:
            yield

    def print_case(self, nid: str) -> None:
        if self.console is None:
            return
        r = self.results[nid]
        cid = nid.split("::", 1)[1]
        style = {"passed": "green", "failed": "bold red", "error": "bold red", "xpassed": "bold red",
                 "skipped": "yellow", "xfailed": "cyan"}.get(r["outcome"], "")
        label = r["outcome"] or "?"
        if label == "failed" and not self.counts_against(nid, r):
            label, style = "unmet", "yellow"  # a SHOULD case: a recommendation not met
        line = f"[{style}]{label:8}[/] {cid:28} {r['duration']:6.2f}s"
        msg = (r.get("detail") or {}).get("message")
        if msg and r["outcome"] != "passed":
            line += f"  {_one_line(msg, 220)}"
        with self.terminal():
            self.console.print(line, markup=True, highlight=False)

    # -- end of run ------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Iterator[None]:
        yield
        if self.list_only:
            session.exitstatus = 0 if not self.harness_errors else 2
            return
        self.shared.finish()
        self.shared.release_parked()
        if self.target is not None:
            self.target_desc = self.target.describe()
            self.target.stop()
        if self.private is not None:
            self.private.close()
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            # Ctrl-C, or SIGTERM (which the CLI turns into the same): no verdict about the server.
            self.interrupted = [nid.split("::", 1)[-1] for nid in self.order if self.results[nid]["outcome"] is None]
            during = f" during {', '.join(self.interrupted)}" if self.interrupted else ""
            self.harness_errors.append(f"the run was interrupted (Ctrl-C or SIGTERM){during}; the cases after "
                                       "it did not run")
        cases = self.cases()
        status = self.exit_status(int(exitstatus), cases)
        session.exitstatus = status
        doc = report.build(self, cases, status)
        if self.report_dir:
            report.write(self.report_dir, doc)
        if self.console is not None and not self.config.option.echoconf_no_summary:
            with self.terminal():
                report.print_summary(self.console, doc)

    def cases(self) -> list[dict[str, Any]]:
        """The verdicts in catalogue order (the run order may differ: see SharedServer.order)."""
        rank = {nid: i for i, nid in enumerate(self.catalogue)}
        out = []
        for nid in sorted(self.order, key=lambda n: rank.get(n, len(rank))):
            r = self.results[nid]
            meta = self.meta.get(nid, {})
            outcome, detail = r["outcome"] or "error", r["detail"]
            if r["outcome"] is None and self.interrupted:
                outcome, detail = "skipped", {"message": "not finished: the run was interrupted"}
            out.append({"id": nid.split("::", 1)[1], "level": meta.get("level"),
                        "grade": self.grade_of(nid, r), "why": meta.get("why"),
                        "requirement": meta.get("requirement"), "fm": meta.get("fm", []),
                        "outcome": outcome, "duration": round(r["duration"], 3), "detail": detail})
        return out

    def grade_of(self, nid: str, r: dict[str, Any]) -> str:
        """The case's grade; a death is always a MUST failure, whatever the case."""
        if "server_died" in (r.get("detail") or {}):
            return "must"
        return self.meta.get(nid, {}).get("grade", "must")

    def counts_against(self, nid: str, r: dict[str, Any]) -> bool:
        """Whether this result makes the run fail: a bad outcome in a MUST case, or in any
        case with --strict."""
        return r["outcome"] in BAD and (self.strict or self.grade_of(nid, r) == "must")

    @property
    def meta(self) -> dict[str, dict[str, Any]]:
        return self.config.stash.get(META_KEY, {})

    def exit_status(self, pytest_status: int, cases: list[dict[str, Any]]) -> int:
        if self.harness_errors or pytest_status in (2, 3, 4):
            return 2
        if any(c["outcome"] in BAD and (self.strict or c["grade"] == "must") for c in cases):
            return 1
        if not cases:
            return 2 if pytest_status == 5 else 0
        return 0


META_KEY = pytest.StashKey[dict]()
BAD = report.BAD


def _grade(item: pytest.Item) -> str:
    m = item.get_closest_marker("case")
    return m.kwargs.get("grade", "must") if m else "must"
PRIVATE_KEY = pytest.StashKey[list]()  # a case's private instances (fixture fresh_server)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    meta = {}
    for item in session.items:
        m = item.get_closest_marker("case")
        if m is not None:
            meta[item.nodeid] = dict(m.kwargs)
    session.config.stash[META_KEY] = meta


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("E "):
            return line[2:].strip()
    return _one_line(text, 300)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return _first_line(report.longreprtext)


def _socket_error(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """A socket error that no step of the case explained, as what the server did and where the
    harness met it (the innermost echoconf function), instead of a bare "TimeoutError"."""
    e = excinfo.value
    where = ""
    for entry in reversed(excinfo.traceback):
        path = Path(str(entry.path))
        if path.parent.name in ("echoconf", "cases"):
            where = f"{path.stem}.{entry.frame.code.name}"
            break
    if isinstance(e, TimeoutError) and where == "client.connect":
        what = ("Connecting to the server timed out: it did not accept the connection (its listen backlog "
                "was full, or it no longer accepts)")
    elif isinstance(e, TimeoutError):
        what = "A step on a connection to the server timed out: the server stopped reading or answering"
    elif isinstance(e, ConnectionRefusedError):
        what = "The server refused a connection: nothing listened on its port"
    elif isinstance(e, ConnectionResetError):
        what = "The server reset a connection (RST)"
    elif isinstance(e, BrokenPipeError):
        what = "The server had closed a connection the client was still writing to"
    else:
        what = "A socket operation on a connection to the server failed"
    return f"{what} ({type(e).__name__}: {e}{f'; in {where}' if where else ''})."


def _generic_detail(report: pytest.TestReport) -> dict[str, Any]:
    text = report.longreprtext
    detail: dict[str, Any] = {"message": _first_line(text)}
    if "Falsifying example" in text or "Falsifying" in text:
        lines = text.splitlines()
        start = next(i for i, l in enumerate(lines) if "Falsifying" in l)
        steps = [l for l in lines[start:] if l.strip() and not l.startswith("E ")][:80]
        detail["falsifying_example"] = "\n".join(steps)
    if "Timeout" in text and "pytest-timeout" in text or "Failed: Timeout" in text:
        detail["message"] = "The case hit its hard time bound (pytest-timeout): " + detail["message"]
    return detail
