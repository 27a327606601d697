"""The next-hop memo gives exactly what ``next_hop`` gives (plus the Peer for an IP host),
stays within its bound, keeps no unroutable URI, and the transport's upgrade rule follows
its listeners."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactor

from msrp_gateway.sip.peers import Peer, TransportError
from msrp_gateway.sip.resolution import NextHopCache, next_hop
from msrp_gateway.sip.transport import SIPTransport

URIS = [
    "sip:bob@127.0.0.1", "sip:bob@127.0.0.1:5070", "sips:bob@127.0.0.1",
    "sip:bob@[::1]:5080;transport=tcp", "sip:bob@example.net", "sip:b@h;maddr=10.0.0.2",
    "sips:b@h;transport=tcp", "<sip:bob@127.0.0.1;transport=TLS>", "sip:b@10.1.1.1;transport=udp",
]


@pytest.mark.parametrize("uri", URIS)
@pytest.mark.parametrize("size", [0, 1300, 1301, 70000])
@pytest.mark.parametrize("upgrade", [True, False])
def test_memo_gives_what_next_hop_gives(uri, size, upgrade):
    cache = NextHopCache()
    want = next_hop(uri, size, upgrade=upgrade)
    for _ in range(2):  # the first call fills, the second reads the entry
        transport, host, port, peer = cache.lookup(uri, size, upgrade)
        assert (transport, host, port) == want
        bare = host.strip("[]")
        if bare[0].isdigit() or ":" in bare:
            assert peer == Peer(transport, bare, port)
        else:
            assert peer is None


def test_size_and_upgrade_are_part_of_the_key():
    cache = NextHopCache()
    assert cache.lookup("sip:b@127.0.0.1", 100, True)[0] == "udp"
    assert cache.lookup("sip:b@127.0.0.1", 2000, True)[0] == "tcp"
    assert cache.lookup("sip:b@127.0.0.1", 2000, False)[0] == "udp"


def test_memo_is_bounded_oldest_first():
    cache = NextHopCache(max_entries=3)
    for i in range(10):
        cache.lookup(f"sip:b@10.0.0.{i}", 0, True)
        assert len(cache) <= 3
    assert cache.lookup("sip:b@10.0.0.9", 0, True)[3] == Peer("udp", "10.0.0.9", 5060)


def test_unroutable_uris_raise_every_time_and_are_not_kept():
    cache = NextHopCache()
    for uri in ("mailto:x@y", "sip:b@h;transport=sctp", "sip:"):
        for _ in range(2):
            with pytest.raises(TransportError):
                cache.lookup(uri, 0, True)
    assert len(cache) == 0


def _resolved(transport, uri, size):
    result = []
    transport.resolve(uri, size).addBoth(result.append)
    return result[0]


def test_transport_moves_large_requests_to_tcp_once_a_tcp_listener_exists():
    t = SIPTransport(MemoryReactor())  # no listener yet: nothing to upgrade to
    assert _resolved(t, "sip:b@127.0.0.1:5070", 2000) == Peer("udp", "127.0.0.1", 5070)
    t.listen("tcp:127.0.0.1:5060")
    assert _resolved(t, "sip:b@127.0.0.1:5070", 2000) == Peer("tcp", "127.0.0.1", 5070)
    t.stop()
    assert _resolved(t, "sip:b@127.0.0.1:5070", 2000) == Peer("udp", "127.0.0.1", 5070)
    big = _resolved(t, "sip:b@127.0.0.1:5070", 70000)
    assert isinstance(big.value, TransportError)
