"""The signaling session's decisions (p2p_protocol/session.py), without sockets or clocks."""

import json
import random
from typing import Any

import pytest

from p2p_protocol.session import (
    REPLY_TIMEOUT,
    ROTATION_GRACE,
    Backoff,
    CloseReplaced,
    Connect,
    Disconnected,
    ErrorReceived,
    HomelabSession,
    LinkProtocol,
    Lost,
    NotJson,
    Ping,
    PongReceived,
    Refused,
    Registered,
    Replaced,
    ReplacementFailed,
    Replied,
    SessionAction,
    SignalReceived,
    TimedOut,
    Uniform,
    backoff_delay,
)


def is_registered(message: dict[str, Any]) -> bool:
    return message.get("action") == "registered"


def frame(message: dict[str, Any]) -> str:
    return json.dumps(message)


REGISTER = {"action": "register", "name": "laptop", "token": "t"}
REGISTERED = {"action": "registered", "name": "laptop", "connectionId": "A="}


# LinkProtocol: one connection's requests and replies.


def test_a_request_is_sent_compact_and_answered_by_its_reply() -> None:
    link = LinkProtocol()
    request = link.request(REGISTER, is_registered, now=5.0)
    assert link.data_to_send() == ['{"action":"register","name":"laptop","token":"t"}']
    assert link.deadline(request) == 5.0 + REPLY_TIMEOUT
    link.receive_text(frame({"action": "sendSignal", "from": "B=", "data": "x"}))
    link.receive_text(frame(REGISTERED))
    assert link.events_received() == [SignalReceived("B=", "x"), Replied(request, REGISTERED)]
    assert link.next_deadline() is None
    link.receive_text(frame(REGISTERED))  # a second one answers nothing
    assert link.events_received() == []


def test_an_error_reply_refuses_the_oldest_request() -> None:
    link = LinkProtocol()
    first = link.request(REGISTER, is_registered, now=0.0)
    second = link.request({"action": "sendSignal", "to": "me", "data": "identify"}, bool, now=1.0)
    error = {"error": "unauthorized", "message": "bad token"}
    link.receive_text(frame(error))
    assert link.events_received() == [Refused(first, error)]
    link.receive_text(frame({"action": "connected", "data": "A="}))
    assert link.events_received() == [Replied(second, {"action": "connected", "data": "A="})]


def test_a_request_times_out_unless_its_reply_came_first() -> None:
    link = LinkProtocol()
    late = link.request(REGISTER, is_registered, now=0.0, within=2.5)
    answered = link.request(REGISTER, is_registered, now=0.0, within=30.0)
    assert link.next_deadline() == 2.5
    link.time_out(late)
    assert link.events_received() == [TimedOut(late, 2.5)]
    link.receive_text(frame(REGISTERED))  # the reply after the deadline goes to the next one
    link.time_out(answered)
    assert link.events_received() == [Replied(answered, REGISTERED)]


def test_a_closed_connection_fails_what_is_waiting_but_not_what_was_abandoned() -> None:
    link = LinkProtocol()
    waiting = link.request(REGISTER, is_registered, now=0.0)
    abandoned = link.request(REGISTER, is_registered, now=0.0)
    link.abandon(abandoned)
    link.connection_lost()
    assert link.events_received() == [Lost(waiting)]


def test_unsolicited_frames_are_sorted() -> None:
    link = LinkProtocol()
    internal = {"message": "Internal server error", "connectionId": "A=", "requestId": "r"}
    raws: list[str | bytes] = [
        frame({"error": "backend_unreachable", "message": "m", "target": "laptop"}),
        frame(internal),
        frame({"action": "pong", "connectionId": "A="}),
        "not json",
        b"\xff\xfe",
        "[1, 2]",
        frame({"action": "sendSignal", "from": 7, "data": "no sender"}),
        frame({"action": "registered"}),  # nobody asked
    ]
    for raw in raws:
        link.receive_text(raw)
    assert link.events_received() == [
        ErrorReceived({"error": "backend_unreachable", "message": "m", "target": "laptop"}),
        ErrorReceived(internal),
        PongReceived({"action": "pong", "connectionId": "A="}),
        NotJson(),
        NotJson(),
    ]


# HomelabSession: the homelab's registration over its connections.

PING = 240.0
AGE = 6600.0
CAP = 30.0


def session(uniform: Uniform | None = None) -> HomelabSession:
    return HomelabSession(PING, AGE, CAP, uniform=uniform or random.Random(7).uniform)


def registered_at(now: float, **kwargs: Any) -> HomelabSession:
    machine = session(**kwargs)
    assert machine.start() == [Connect(1, rotation=False)]
    assert machine.registered(1, now) == [Registered(1)]
    return machine


def test_keep_alive_pings_every_interval_until_rotation_is_due() -> None:
    machine = registered_at(100.0)
    pings: list[float] = []
    while (deadline := machine.next_deadline()) is not None:
        assert machine.timer(deadline - 0.001) == []  # nothing early
        actions = machine.timer(deadline)
        if actions != [Ping(1)]:
            break
        pings.append(deadline)
    assert pings == [100.0 + PING * n for n in range(1, 28)]  # 27 * 240 = 6480 < 6600
    assert actions == [Connect(2, rotation=True)]  # due at 100 + AGE, and no ping then
    assert deadline == 100.0 + AGE


def test_a_late_timer_pings_once_and_counts_the_interval_from_then() -> None:
    machine = registered_at(0.0)
    assert machine.timer(PING + 50) == [Ping(1)]
    assert machine.timer(PING + 51) == []
    assert machine.next_deadline() == 2 * PING + 50


def test_backoff_doubles_to_the_cap_and_waits_before_each_try() -> None:
    machine = session(uniform=lambda low, high: high)  # the top of each jitter range
    actions: list[SessionAction] = machine.start()
    now, delays = 0.0, []
    for _ in range(9):
        (connect,) = actions
        assert isinstance(connect, Connect)
        (backoff,) = machine.register_failed(connect.conn, now, "unreachable")
        assert isinstance(backoff, Backoff)
        assert backoff.reason == "unreachable"
        delays.append(backoff.delay)
        assert machine.timer(now + backoff.delay - 0.01) == []
        now += backoff.delay
        actions = machine.timer(now)
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert actions == [Connect(10, rotation=False)]


def test_backoff_jitter_is_the_injected_generator_within_bounds() -> None:
    machine = session(uniform=random.Random(42).uniform)
    expected = random.Random(42)
    machine.start()
    for attempt in range(12):
        (backoff,) = machine.register_failed(attempt + 1, float(attempt), "refused")
        assert isinstance(backoff, Backoff)
        ceiling = min(CAP, 0.5 * 2**attempt)
        assert 0 <= backoff.delay <= ceiling
        assert backoff.delay == expected.uniform(0, ceiling)
        assert machine.timer(machine.next_deadline() or 0.0) == [Connect(attempt + 2, False)]


def test_backoff_delay_stays_in_its_range() -> None:
    rng = random.Random(3)
    for attempt in range(12):
        ceiling = min(10.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 10.0, uniform=rng.uniform) for _ in range(100)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8


def test_rotation_registers_the_new_connection_before_closing_the_old() -> None:
    machine = registered_at(0.0)
    assert machine.timer(AGE) == [Connect(2, rotation=True)]
    assert machine.next_deadline() is None  # no pings while the replacement registers
    assert machine.timer(AGE + 500) == []
    assert machine.registered(2, AGE + 1) == [Replaced(2, 1, ROTATION_GRACE)]
    assert machine.active == 2
    close_at = AGE + 1 + ROTATION_GRACE
    assert machine.next_deadline() == close_at
    assert machine.timer(close_at - 0.01) == []
    assert machine.timer(close_at) == [CloseReplaced(1)]
    assert machine.next_deadline() == AGE + 1 + PING
    assert machine.timer(AGE + 1 + PING) == [Ping(2)]
    assert machine.connection_closed(1, AGE + 1 + PING) == []  # the old one no longer counts


def test_a_failed_replacement_keeps_the_old_connection_and_retries_soon() -> None:
    machine = registered_at(0.0, uniform=lambda low, high: 0.0)
    machine.timer(AGE)
    assert machine.register_failed(2, AGE + 2, "unauthorized") == [
        ReplacementFailed(1, 1.0, "unauthorized")  # never sooner than 1 s
    ]
    assert machine.active == 1
    assert machine.timer(AGE + 3) == [Connect(3, rotation=True)]
    assert machine.registered(3, AGE + 4) == [Replaced(3, 1, ROTATION_GRACE)]


def test_a_drop_reconnects_at_once_then_backs_off_from_the_start() -> None:
    machine = session(uniform=lambda low, high: high)
    machine.start()
    assert machine.register_failed(1, 0.0, "unreachable") == [Backoff(0.5, "unreachable")]
    assert machine.timer(0.5) == [Connect(2, rotation=False)]
    assert machine.register_failed(2, 1.0, "unreachable") == [Backoff(1.0, "unreachable")]
    assert machine.timer(2.0) == [Connect(3, rotation=False)]
    assert machine.registered(3, 3.0) == [Registered(3)]
    assert machine.connection_closed(3, 50.0) == [Disconnected(3), Connect(4, rotation=False)]
    assert machine.active is None
    assert machine.next_deadline() is None  # no timer: the connection's outcome comes next
    assert machine.register_failed(4, 51.0, "unreachable") == [Backoff(0.5, "unreachable")]
    assert machine.timer(51.5) == [Connect(5, rotation=False)]
    assert machine.registered(5, 52.0) == [Registered(5)]
    assert machine.next_deadline() == 52.0 + PING


def test_the_old_connection_closing_during_a_replacement() -> None:
    machine = registered_at(0.0)
    machine.timer(AGE)
    assert machine.connection_closed(1, AGE + 1) == []  # decided by the replacement's outcome
    assert machine.registered(2, AGE + 2) == [Replaced(2, 1, ROTATION_GRACE)]

    machine = registered_at(0.0, uniform=lambda low, high: 0.0)
    machine.timer(AGE)
    machine.connection_closed(1, AGE + 1)
    assert machine.register_failed(2, AGE + 2, "unreachable") == [
        ReplacementFailed(1, 1.0, "unreachable"),
        Disconnected(1),
        Connect(3, rotation=False),
    ]


def test_an_outcome_for_a_connection_not_being_opened_is_a_bug() -> None:
    machine = registered_at(0.0)
    with pytest.raises(ValueError, match="not the one being registered"):
        machine.registered(1, 1.0)
