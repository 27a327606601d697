"""Shared test setup: a clean-reactor check for every test (what trial does, pytest does not).

A test that leaves a DelayedCall pending or a port/connection open on the global reactor
fails at teardown, naming what it left; the leftovers are then cleaned so the next test
starts from a clean reactor.  The check never turns the reactor itself (pytest-twisted runs
it in another greenlet), so things already closing or already due are let pass.
"""

from __future__ import annotations

import sys

import pytest

def _reactor():
    """The global reactor if the test session has one (pytest-twisted installs it)."""
    return sys.modules.get("twisted.internet.reactor")


def _selectables(reactor) -> set:
    """Readers and writers still open, less the reactor's own wakers (they appear when it
    starts) and those already closing (loseConnection/stopListening finish a turn later)."""
    found = set(reactor.getReaders()) | set(reactor.getWriters())
    return {s for s in found
            if type(s).__module__ != "twisted.internet._signals"
            and s is not getattr(reactor, "waker", None)
            and not getattr(s, "disconnecting", False)}


def _pending_calls(reactor) -> set:
    """Timers still to come; a call already due (a close finishing on the next reactor
    turn, as trial's one iterate() would run it) is not a leftover."""
    now = reactor.seconds()
    return {c for c in reactor.getDelayedCalls() if c.active() and c.getTime() > now}


def _describe(obj) -> str:
    text = repr(obj)
    return text if len(text) <= 200 else text[:197] + "..."


@pytest.fixture(autouse=True)
def clean_reactor(request):
    """Fail the test if it leaves DelayedCalls or open ports/connections on the reactor."""
    reactor = _reactor()
    if reactor is None or request.node.get_closest_marker("allow_dirty_reactor"):
        yield
        return
    calls_before = _pending_calls(reactor)
    selectables_before = _selectables(reactor)
    yield

    def leftovers():
        calls = _pending_calls(reactor) - calls_before
        sel = _selectables(reactor) - selectables_before
        return calls, sel

    calls, sel = leftovers()
    if not calls and not sel:
        return
    lines = [f"pending DelayedCall: {_describe(c)}" for c in calls]
    lines += [f"open port/connection: {_describe(s)}" for s in sel]
    for c in calls:
        c.cancel()
    for s in sel:
        reactor.removeReader(s)
        reactor.removeWriter(s)
        try:
            if hasattr(s, "stopListening"):
                s.stopListening()
            elif hasattr(s, "abortConnection"):
                s.abortConnection()
            elif hasattr(s, "loseConnection"):
                s.loseConnection()
        except Exception:
            pass
    pytest.fail("the test left the reactor dirty:\n  " + "\n  ".join(lines), pytrace=False)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_dirty_reactor: skip the clean-reactor check (say why next to the marker)")
