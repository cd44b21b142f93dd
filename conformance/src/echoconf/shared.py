"""The shared server: the one instance that most cases use in turn. This module decides which
case is charged with its death, and runs the connections that wait on purpose (parked) while
the cases on private instances run.

The rule for a death: it is charged to the case whose traffic the server was handling. The
server is watched at three moments:
- at the end of each case on it (the plugin's report hook): a death seen then is the case's;
- before the next case: a fresh client must be echoed first (`settle`). A server that dies of
  a case's last close or reset often dies a moment after the case's last check. A server that
  is exiting cannot serve that client, so the death is seen here, whatever the scheduler did,
  and it is charged to the case before;
- when connections are parked: only they reach the server while the private cases run, so a
  death found when they resume is charged to the cases that parked them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pytest

from .caselib import Ctx
from .client import probe
from .target import HarnessError, Target

if TYPE_CHECKING:
    from .plugin import EchoconfRun

SETTLE_PROBE = 1.0  # nominal seconds (times TIME_SCALE) the fresh client waits after a case
SETTLE_GRACE = 2.0  # seconds a server that failed that client has to be seen dead


def incarnation(t: Target | None) -> int:
    """Which start of the server this is: each restart after a death is a new one."""
    return int(getattr(t, "restarts", 0))


def is_private(item: pytest.Item) -> bool:
    """A case that only uses private instances (fixture fresh_server), never the shared one."""
    return (item.get_closest_marker("owned") is not None
            and "fresh_server" in item.fixturenames and "server" not in item.fixturenames)


class SharedServer:
    def __init__(self, run: "EchoconfRun") -> None:
        self.run = run
        self.park_before: str | None = None  # node id of the case before which to park
        self.to_park: list[pytest.Item] = []
        self.parked: dict[str, Any] = {}  # node id -> Parked
        self.users: list[str] = []  # node ids of the cases that used the shared server
        self.charged: str | None = None  # the death already charged to a case, until a restart
        self.settled: str | None = None  # the last user after which a fresh client was tried
        self.unanswered: int | None = None  # the incarnation that did not answer that client
        self.lost: dict[str, str] = {}  # node id -> the death that took its parked connection

    # -- order and parking -----------------------------------------------------------------
    def order(self, items: list[pytest.Item], capabilities: set[str]) -> list[pytest.Item]:
        """Let the cases whose point is a wait (marker `parks`) wait while the cases that
        only use private server instances run: those never touch the shared server, so
        the parked connections see exactly what they would see alone. The private-server
        cases move to where the first parking case was; the parking cases follow them.
        A one-at-a-time server can hold only one parked connection."""
        private = [it for it in items if is_private(it)]
        parkers = [it for it in items if it.get_closest_marker("parks") is not None
                   and all(m.args[0] in capabilities for m in it.iter_markers("needs"))]
        if not private or not parkers:
            return items
        if "concurrent" not in capabilities:
            parkers = parkers[:1]
        # Parked in catalogue order; a lower rank resumes first: a parked connection that
        # holds the server's output (a blocking server may be stuck writing to it) must be
        # drained before the others.
        resumed = sorted(parkers, key=lambda it: it.get_closest_marker("parks").kwargs.get("rank", 0))
        first = min(items.index(it) for it in parkers)
        moved = set(map(id, private + parkers))
        before = [it for it in items[:first] if id(it) not in moved]
        after = [it for it in items[first:] if id(it) not in moved]
        self.to_park = parkers
        self.park_before = private[0].nodeid
        return before + private + resumed + after

    def park_all(self, make_ctx: Callable[[str], Ctx]) -> None:
        """Open the parked connections (failures are left to the cases: they park inline)."""
        targets = self.to_park
        self.to_park = []
        try:
            t = self.run.get_target()
            self.revive(t)
        except HarnessError:
            return
        for item in targets:
            m = item.get_closest_marker("parks")
            cm = item.get_closest_marker("case")
            assert m is not None and cm is not None
            try:
                parked = m.args[0](t, make_ctx(cm.kwargs["id"]))
            except Exception:  # noqa: BLE001 - the case repeats this inline and reports it
                continue
            parked.instance = incarnation(t)
            self.parked[item.nodeid] = parked

    def take_parked(self, nodeid: str) -> Any:
        """The parked connection of a case, if it is still on the same server instance.
        One lost to a death is in `lost`; the case then starts afresh."""
        parked = self.parked.pop(nodeid, None)
        if parked is not None and parked.instance != incarnation(self.run.target):
            parked.close()
            return None
        return parked

    def release_parked(self) -> None:
        for parked in self.parked.values():
            parked.close()
        self.parked.clear()

    # -- deaths ----------------------------------------------------------------------------
    def use(self, nodeid: str) -> None:
        self.users.append(nodeid)

    def settle(self, t: Target) -> None:
        """After a case on the shared server, before anything else uses it: a fresh client
        must be echoed. The client gives no verdict: a server that is alive but does not
        answer it is left to the next case, and not tried again until it restarts."""
        last = self.users[-1] if self.users else None
        if last is None or last == self.settled or not t.reports_death:
            return
        self.settled = last
        gen = incarnation(t)
        if self.unanswered == gen or t.death():
            return
        if self.run.transport == "udp":
            from . import udpclient

            if udpclient.probe(t.addr, SETTLE_PROBE) is None:
                return
        elif probe(t.addr, SETTLE_PROBE, t.factory()) is None:
            return
        if t.death(grace=SETTLE_GRACE) is None:
            self.unanswered = gen

    def revive(self, t: Target) -> None:
        """Before a case: a death not yet charged to a case is charged (to the parked cases
        when connections were parked on the dead instance, else to the case before); then
        the server is restarted if it is dead."""
        self.settle(t)
        died = t.death()
        if died and died != self.charged:
            gen = incarnation(t)
            waiting = [n for n, p in self.parked.items() if p.instance == gen]
            for nid in waiting:
                self.lost[nid] = died
            if not waiting:
                self.blame_previous(died)
        t.ensure_running()
        self.charged = None

    def finish(self) -> None:
        """At the end of the run: a death after the last case is that case's."""
        t = self.run.target
        if t is None:
            return
        self.settle(t)
        died = t.death()
        if died and died != self.charged:
            self.blame_previous(died, noticed="after the last case")

    def blame_previous(self, died: str, noticed: str = "before the next case") -> None:
        """The server was found dead before a case started: the case that ran before it
        (which had already passed) killed it after its last check."""
        # Only a case that used the shared server can have killed it: cases on private
        # instances run in between (see order) and are never charged.
        results = self.run.results
        done = [n for n in self.users if results.get(n, {}).get("outcome") not in (None, "skipped")]
        if not done:
            return
        nid = done[-1]
        r = results[nid]
        msg = f"The server died at the end of this case: {died}."
        if "SIGPIPE" in died:
            msg += " Writing to a connection the client had reset raised SIGPIPE (FM-07)."
        if r["outcome"] in ("failed", "error"):
            r["detail"] = {**(r["detail"] or {}), "server_died": died}
            r["detail"]["message"] = f"{r['detail'].get('message', '')} Then {msg[0].lower()}{msg[1:]}"
        else:
            # Whatever the case's own verdict, a death is a failure (never an expected one).
            r["outcome"] = "failed"
            r["detail"] = {"message": msg, "server_died": died, "noticed": noticed}
            self.run.print_case(nid)
