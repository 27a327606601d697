"""MSRP through an RFC 4976 relay over TLS (msrps:), real sockets on 127.0.0.1.

The relay is the tests' own (`tests.msrp_relay_fixture`, shared with the plain-TCP relay
tests), here listening with the shared test certificates (`tests.tlscerts`, a CA and a leaf
naming 127.0.0.1): it challenges AUTH with Digest, checks the answer, refuses lifetimes
outside its bounds with 423 Interval Out-of-Bounds, grants a Use-Path, and forwards SENDs by
To-Path. Every wait is on an event with a generous
timeout (no fixed sleeps), so the tests hold on a slow, loaded machine.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from msrp_gateway.msrp.relay import RelayAuthError
from msrp_gateway.msrp.transport import MSRPStack, TLSSettings
from tests.msrp_relay_fixture import (
    TIMEOUT,
    Inbox,
    MiniRelay,
    relayed_pair,
    stop_in_order,
)
from tests.tlscerts import make_certs

USERS = {"alice": "s3cret"}


async def until(condition: Any, what: str) -> None:
    """Poll a condition of the client side (it has no event to wait on) within TIMEOUT."""
    deadline = reactor.seconds() + TIMEOUT
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"not within {TIMEOUT} s: {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


def tls_files(tmp_path, name: str, names: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
              ) -> TLSSettings:
    certs = make_certs(tmp_path / name, names)
    return TLSSettings(certs.certificate, certs.private_key, certs.ca_certificates)


@pytest_twisted.async_yield_fixture
async def relayed(tmp_path, clean_reactor):
    """`relayed(**relay_options)` -> (relay, A behind it, B reached directly), all msrps.

    A listens nowhere (behind a relay nothing needs to reach it): its URI is given, so
    every byte of A goes over its one TLS connection to the relay.
    """
    to_stop: list[Any] = []  # stacks first, then the relays they connect to

    def make(*, client_tls: TLSSettings | None = None, relay_tls: TLSSettings | None = None,
             expires: int | None = None, **relay_options: Any):
        tls = tls_files(tmp_path, "shared")
        relay = MiniRelay(USERS, tls=relay_tls or tls, **relay_options)
        a = MSRPStack(reactor, "msrps://127.0.0.1:9;tcp", relay_uri=relay.uri,
                      tls=client_tls or tls, relay_username="alice", relay_password="s3cret")
        b = MSRPStack(reactor, tls=tls)
        to_stop.extend([b, a, relay])
        assert a.relay is not None
        a.relay.requested_expires = expires
        b.listen("msrps:127.0.0.1:0")
        return relay, a, b

    yield make
    await stop_in_order(to_stop, clean_reactor)


@pytest.mark.parametrize("a_active", [True, False], ids=["we-connect", "peer-connects"])
@pytest_twisted.ensureDeferred
async def test_messages_both_ways_through_a_tls_relay(relayed, a_active):
    relay, a, b = relayed()
    await a.start()
    assert a.relay.use_path[0].startswith(relay.uri.split(";")[0] + "/")
    assert relay.granted.items == [600]
    sa, sb = await relayed_pair(a, b, a_active=a_active)
    assert sa.local_path == [*a.relay.use_path, sa.local_uri]  # Use-Path before our URI
    assert all(uri.startswith("msrps://") for uri in sa.local_path + sb.local_path)
    inbox_a, inbox_b = Inbox(sa), Inbox(sb)
    assert await sa.send("text/plain", b"over TLS via the relay") == 200
    big = bytes(range(256)) * 40  # several chunks, each forwarded over TLS
    assert await sb.send("text/plain", big) == 200
    [to_b] = await inbox_b.wait(1)
    [to_a] = await inbox_a.wait(1)
    assert (to_b.body, to_a.body) == (b"over TLS via the relay", big)
    assert a.connection_count() == 1  # A's one TLS connection is the relay's
    sent_by_a = [path for _, path in relay.forwarded if path == sb.local_uri]
    assert len(sent_by_a) == (2 if a_active else 1)  # (binding SEND when A connected)


@pytest_twisted.ensureDeferred
async def test_relay_423_min_expires_is_asked_again_over_tls(relayed):
    relay, a, _ = relayed(expires=30, min_expires=120)
    await a.start()
    asked = [r.expires for r in relay.auth_requests.items]
    # challenge, credentials asking 30 s (423), credentials asking the relay's minimum
    assert asked == ["30", "30", "120"]
    assert relay.granted.items == [120] and a.relay.ready
    assert a.relay.expires_at is not None
    assert 90 < a.relay.expires_at - reactor.seconds() <= 120


@pytest_twisted.ensureDeferred
async def test_relay_423_max_expires_lowers_the_lifetime_over_tls(relayed):
    relay, a, _ = relayed(expires=86400, max_expires=1800)
    await a.start()
    assert [r.expires for r in relay.auth_requests.items][-1] == "1800"
    assert relay.granted.items == [1800] and a.relay.requested_expires == 1800


@pytest_twisted.ensureDeferred
async def test_tls_relay_is_re_authenticated_before_expiry(relayed):
    relay, a, b = relayed(expires=2)  # the relay grants 2 s: refresh after 1.6 s
    await a.start()
    sa, sb = await relayed_pair(a, b, a_active=True)
    await relay.granted.wait(2)  # the refresh AUTH, on the same TLS connection
    await until(lambda: a.relay.auth_count >= 2, "the client took the refresh's 200")
    assert relay.granted.items[:2] == [2, 2] and a.relay.ready
    inbox = Inbox(sb)
    assert await sa.send("text/plain", b"still through") == 200
    [got] = await inbox.wait(1)
    assert got.body == b"still through" and a.connection_count() == 1


@pytest_twisted.ensureDeferred
async def test_a_relay_certificate_for_another_name_is_refused_before_any_auth(relayed,
                                                                                tmp_path):
    """Peer verification: a relay whose certificate (from a CA we trust) does not name
    127.0.0.1 never sees an AUTH, so our credentials never reach it."""
    wrong = tls_files(tmp_path, "wrong", names=("relay.invalid",))
    ours = tls_files(tmp_path, "ours")
    trusting = TLSSettings(ours.certificate, ours.private_key, wrong.ca_certificates)
    relay, a, _ = relayed(relay_tls=wrong, client_tls=trusting)
    with pytest.raises(RelayAuthError) as err:
        await a.start()
    assert err.value.code == 503 and relay.auth_requests.items == []
    assert not a.relay.ready
