"""state.machine: a Hypothesis state machine over several clients against a model of the owed echo."""

from __future__ import annotations

import socket
import time

from hypothesis import note, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from echoconf.caselib import Ctx, case
from echoconf.client import OPEN, Deadline, connect, read_to_eof, recv_exactly, reset, send_all
from echoconf.oracle import CaseFailure, StreamCheck
from echoconf.steps import with_death
from echoconf.target import Target

UNREAD_CAP = 64 * 1024  # stay well inside any server's buffers: a model client never blocks


class Client:
    def __init__(self, sock: socket.socket, n: int) -> None:
        self.sock, self.n = sock, n
        self.sent = bytearray()
        self.received = bytearray()

    @property
    def owed(self) -> int:
        return len(self.sent) - len(self.received)


def _has_clients(machine: "RuleBasedStateMachine") -> bool:
    return bool(getattr(machine, "clients"))


# Named functions, not lambdas: Hypothesis reads a lambda's source to describe it, which
# cost a third of the case's time.
def machine_for(server: Target, max_clients: int) -> type[RuleBasedStateMachine]:
    def _may_connect(machine: "RuleBasedStateMachine") -> bool:
        return len(getattr(machine, "clients")) < max_clients

    class EchoMachine(RuleBasedStateMachine):
        """Model: for each client, the server owes it exactly the bytes it sent and has not read back."""

        def __init__(self) -> None:
            super().__init__()
            self.clients: list[Client] = []
            self.opened = 0

        def _fail(self, c: Client, what: str, observed: bytes, end: str, hint: str = "") -> None:
            failure = StreamCheck(f"client {c.n}: {what}", bytes(c.sent), observed, end,
                                  shortfall_hint=hint, deadline=2.0).verdict()
            raise with_death(server, failure or CaseFailure(f"client {c.n}: {what}: unexpected {end}"))

        @precondition(_may_connect)
        @rule()
        def connect(self) -> None:
            s = connect(server.addr, 2.0, factory=server.factory())
            self.clients.append(Client(s, self.opened))
            note(f"connect -> client {self.opened}")
            self.opened += 1

        @precondition(_has_clients)
        @rule(i=st.integers(0, 3), data=st.binary(max_size=2048), cuts=st.lists(st.integers(0, 2048), max_size=4),
              nodelay=st.booleans())
        def send(self, i: int, data: bytes, cuts: list[int], nodelay: bool) -> None:
            c = self.clients[i % len(self.clients)]
            if c.owed + len(data) > UNREAD_CAP:
                data = data[: max(0, UNREAD_CAP - c.owed)]
            note(f"client {c.n}: send {len(data)} bytes in {len(set(cuts)) + 1} pieces (nodelay={nodelay})")
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
            prev = 0
            d = Deadline(2.0)
            for cut in sorted({min(x, len(data)) for x in cuts}) + [len(data)]:
                try:
                    send_all(c.sock, data[prev:cut], d)
                except OSError as e:
                    self._fail(c, f"send failed ({e})", bytes(c.received), "RST")
                c.sent += data[prev:cut]
                prev = cut

        @precondition(_has_clients)
        @rule(i=st.integers(0, 3), n=st.integers(1, 4096))
        def recv_some(self, i: int, n: int) -> None:
            c = self.clients[i % len(self.clients)]
            want = min(n, c.owed)
            note(f"client {c.n}: read {want} of {c.owed} owed bytes")
            if not want:
                return
            r = recv_exactly(c.sock, want, Deadline(2.0))
            c.received += r.data
            if len(r.data) < want or not bytes(c.sent).startswith(bytes(c.received)):
                self._fail(c, "reading owed bytes", bytes(c.received), r.end,
                           hint="bytes the server received were not echoed")

        @precondition(_has_clients)
        @rule(i=st.integers(0, 3))
        def half_close(self, i: int) -> None:
            c = self.clients.pop(i % len(self.clients))
            note(f"client {c.n}: SHUT_WR, read the {c.owed} owed bytes, expect FIN")
            try:
                c.sock.shutdown(socket.SHUT_WR)
                r = read_to_eof(c.sock, Deadline(2.0))
            finally:
                c.sock.close()
            c.received += r.data
            if bytes(c.received) != bytes(c.sent) or r.end != "FIN":
                self._fail(c, "SHUT_WR then read to EOF", bytes(c.received), r.end,
                           hint="output still owed when the client half-closed was dropped (FM-05)")

        @precondition(_has_clients)
        @rule(i=st.integers(0, 3))
        def reset(self, i: int) -> None:
            c = self.clients.pop(i % len(self.clients))
            note(f"client {c.n}: reset (RST) with {c.owed} bytes owed")
            reset(c.sock)

        @rule(ms=st.sampled_from((0, 1, 2, 5, 10, 30)))
        def pause(self, ms: int) -> None:
            note(f"pause {ms} ms")
            time.sleep(ms / 1000)  # pacing only

        @invariant()
        def received_is_prefix(self) -> None:
            for c in self.clients:
                if not bytes(c.sent).startswith(bytes(c.received)):
                    self._fail(c, "the echo so far is not a prefix of what it sent", bytes(c.received), OPEN)

        def teardown(self) -> None:
            for c in self.clients:
                reset(c.sock)

    return EchoMachine


@case("state.machine", "derived", "Hypothesis state machine over up to 4 clients: connect, send random bytes "
      "in random chunks, read some, half-close, reset, pause; model = owed echo per client; received always "
      "a prefix of sent", fm=["FM-01", "FM-05", "FM-21"], timeout=300,
      grade="must", why="any interleaving of sends, reads, half-closes and resets over several clients keeps every stream exact")
def test_machine(server: Target, ctx: Ctx) -> None:
    machine = machine_for(server, 4 if ctx.concurrent else 1)
    run_state_machine_as_test(machine, settings=settings(
        settings.default, max_examples=ctx.profile.machine_examples,
        stateful_step_count=ctx.profile.machine_steps))
