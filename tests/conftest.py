"""Shared test setup: a clean-reactor check for every test (what trial does, pytest does not),
and the Hypothesis profile every property test runs under.

A test that leaves a DelayedCall pending or a port/connection open on the global reactor
fails at teardown, naming what it left; the leftovers are then cleaned so the next test
starts from a clean reactor.  The check never turns the reactor itself (pytest-twisted runs
it in another greenlet), so things already closing or already due are let pass.  A fixture
whose teardown lets the reactor run until things have wound down awaits
``clean_reactor.settle()`` (a bounded wait on that condition) instead of a fixed sleep.

Hypothesis: no per-example deadline and no too_slow health check, for every test file (a
loaded CI machine is several times slower than a laptop; a deadline there fails at random).
Each test still sets its own max_examples.
"""

from __future__ import annotations

import sys
import time

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile(
    "msrpgw", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("msrpgw")

# a bound only ever waited out when something is broken
SETTLE_TIMEOUT = 30.0

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


class ReactorCheck:
    """What was on the reactor when the test started; `leftovers()` is what is new since."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.calls_before = _pending_calls(reactor)
        self.selectables_before = _selectables(reactor)

    def leftovers(self) -> tuple[set, set]:
        calls = _pending_calls(self.reactor) - self.calls_before
        sel = _selectables(self.reactor) - self.selectables_before
        return calls, sel

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Let the reactor run until the test's timers have fired and its connections have
        closed, or `timeout` s passed (then the check names what is left). For fixture
        teardowns, in place of a fixed sleep that a slow machine may outlast."""
        from twisted.internet import task

        end = time.monotonic() + timeout
        while any(self.leftovers()) and time.monotonic() < end:
            await task.deferLater(self.reactor, 0.01, lambda: None)


@pytest.fixture(autouse=True)
def clean_reactor(request):
    """Fail the test if it leaves DelayedCalls or open ports/connections on the reactor.

    Yields a `ReactorCheck` (None without a reactor): fixtures may `await ...settle()`."""
    reactor = _reactor()
    if reactor is None:
        yield None
        return
    check = ReactorCheck(reactor)
    if request.node.get_closest_marker("allow_dirty_reactor"):
        yield check
        return
    yield check

    calls, sel = check.leftovers()
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
