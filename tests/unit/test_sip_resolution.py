"""RFC 3263 server location without sockets: the pure choices (NAPTR filtering and order,
SRV order per RFC 2782 with a seeded random source, which URIs use DNS at all) and the
resolver's walk NAPTR -> SRV -> A/AAAA over an in-memory zone on ``task.Clock`` (cache
within TTLs and bounded, shared in-flight queries, failures as TransportError)."""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.names import dns, error

from msrp_gateway.sip.dns import (
    DNSCache,
    DNSLookupError,
    Located,
    SIPResolver,
    TargetsExhausted,
    parse_servers,
)
from msrp_gateway.sip.peers import Peer, TransportError
from msrp_gateway.sip.resolution import (
    NAPTRRecord,
    SRVRecord,
    naptr_choices,
    order_srv,
    refuses_service,
    srv_name,
    target_of,
    transport_order,
)
from msrp_gateway.sip.transport import SIPTransport

ALL = frozenset({"udp", "tcp", "tls"})


# -- pure choices ------------------------------------------------------------------------

def srv(priority, weight, port, target):
    return SRVRecord(priority, weight, port, target)


def test_srv_order_puts_lower_priority_first_whatever_the_weights():
    records = [srv(20, 100, 1, "c"), srv(10, 0, 2, "a"), srv(30, 5, 3, "d"), srv(10, 0, 4, "b")]
    for seed in range(20):
        ordered = order_srv(records, random.Random(seed))
        assert [r.priority for r in ordered] == [10, 10, 20, 30]
        assert {r.target for r in ordered[:2]} == {"a", "b"}


def test_srv_order_is_reproducible_with_a_seeded_random_source():
    records = [srv(10, w, 5060 + w, f"h{w}") for w in (1, 2, 3, 4, 5)]
    first = order_srv(records, random.Random(1234))
    assert order_srv(records, random.Random(1234)) == first
    assert sorted(first, key=lambda r: r.weight) == sorted(records, key=lambda r: r.weight)


def test_srv_weights_share_first_picks_in_proportion():
    """RFC 2782: within one priority, a target is picked first with probability
    weight / total (zero-weight targets almost never when others weigh something)."""
    records = [srv(10, 60, 1, "big"), srv(10, 30, 2, "mid"), srv(10, 10, 3, "small"),
               srv(10, 0, 4, "zero")]
    rng = random.Random(7)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(4000))
    assert 0.55 < firsts["big"] / 4000 < 0.65
    assert 0.26 < firsts["mid"] / 4000 < 0.34
    assert 0.07 < firsts["small"] / 4000 < 0.13
    assert firsts["zero"] < 80  # picked first only when the draw is 0: 1 in 101 (~40)


def test_srv_order_keeps_every_record_once_and_drops_dot_targets():
    records = [srv(1, 0, 1, "."), srv(1, 5, 2, "x"), srv(2, 0, 3, "y"), srv(2, 0, 4, "z")]
    ordered = order_srv(records, random.Random(3))
    assert sorted(r.target for r in ordered) == ["x", "y", "z"]
    assert refuses_service([srv(0, 0, 0, ".")])
    assert not refuses_service(records)
    assert not refuses_service([])


def naptr(order, pref, service, replacement, flags="s", regexp=""):
    return NAPTRRecord(order, pref, flags, service, regexp, replacement)


def test_naptr_choices_follow_order_then_preference_and_skip_what_sip_cannot_use():
    records = [
        naptr(20, 10, "SIP+D2U", "_sip._udp.x"),
        naptr(10, 20, "SIP+D2T", "_sip._tcp.x"),
        naptr(10, 10, "SIPS+D2T", "_sips._tcp.x"),
        naptr(5, 5, "SIP+D2S", "_sip._sctp.x"),       # SCTP: not ours
        naptr(5, 5, "E2U+sip", "x"),                  # ENUM, not RFC 3263
        naptr(5, 5, "SIP+D2T", "t.x", flags="a"),     # only S flags lead to SRV
        naptr(5, 5, "SIP+D2T", "t.x", regexp="!^.*$!sip:x!"),  # SIP uses no regexp
    ]
    assert naptr_choices(records, ["udp", "tcp", "tls"]) == [
        ("tls", "_sips._tcp.x"), ("tcp", "_sip._tcp.x"), ("udp", "_sip._udp.x")]
    # transports we cannot send are skipped; service names are case-insensitive
    assert naptr_choices([naptr(1, 1, "sip+d2u", "_sip._udp.x")] + records,
                         ["udp", "tcp"]) == [("udp", "_sip._udp.x"), ("tcp", "_sip._tcp.x")]


def test_naptr_choices_put_udp_last_for_a_large_request():
    records = [naptr(10, 10, "SIP+D2U", "u"), naptr(20, 10, "SIP+D2T", "t")]
    assert naptr_choices(records, ["udp", "tcp"]) == [("udp", "u"), ("tcp", "t")]
    assert naptr_choices(records, ["tcp", "udp"], large=True) == [("tcp", "t"), ("udp", "u")]


@pytest.mark.parametrize("uri, srv_used", [
    ("sip:bob@example.test", True),
    ("sip:bob@Example.Test.", True),
    ("sips:bob@example.test", True),
    ("sip:bob@example.test;transport=tcp", True),   # SRV for that transport only
    ("sip:bob@example.test:5070", False),           # a port: A/AAAA only (s.4.2)
    ("sip:bob@127.0.0.1", False),
    ("sip:bob@[::1]", False),
    ("sip:bob@localhost", False),                   # RFC 6761: never asked of DNS
    ("sip:bob@gw.localhost", False),
    ("sip:bob@proxy", False),                       # one label: a host, search domains
    ("sip:bob@10.0.0.1;maddr=relay.example.test", True),
])
def test_which_uris_go_through_naptr_and_srv(uri, srv_used):
    assert target_of(uri).uses_srv is srv_used


def test_transport_order_by_uri_and_size():
    assert transport_order(target_of("sip:b@x.test"), ALL, False) == ["udp", "tcp", "tls"]
    assert transport_order(target_of("sip:b@x.test"), ALL, True) == ["tcp", "tls", "udp"]
    assert transport_order(target_of("sip:b@x.test"), frozenset({"udp"}), False) == ["udp"]
    assert transport_order(target_of("sips:b@x.test"), frozenset({"udp"}), False) == ["tls"]
    assert transport_order(target_of("sips:b@x.test;transport=tcp"), ALL, False) == ["tls"]
    assert transport_order(target_of("sip:b@x.test;transport=TCP"), ALL, True) == ["tcp"]
    assert srv_name("tls", "X.Test.") == "_sips._tcp.x.test"
    with pytest.raises(TransportError):
        target_of("sip:b@x.test;transport=sctp")
    with pytest.raises(TransportError):
        target_of("mailto:b@x.test")


# -- the resolver over an in-memory zone -------------------------------------------------

class Zone:
    """A DNS client answering from a dict, counting what it is asked. Names absent from
    the zone are NXDOMAIN; ``pending`` names leave the query unanswered until fired."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], list] = {}
        self.asked: list[tuple[str, int]] = []
        self.fail: dict[tuple[str, int], Exception] = {}
        self.hold: dict[tuple[str, int], list[defer.Deferred]] = {}

    def add(self, name: str, payload, ttl: int = 300) -> None:
        rtype = payload.TYPE
        self.records.setdefault((name, rtype), []).append(
            dns.RRHeader(name.encode(), rtype, dns.IN, ttl, payload))

    def _answer(self, name: str, rtype: int):
        key = (name, rtype)
        self.asked.append(key)
        if key in self.fail:
            return defer.fail(self.fail[key])
        if key in self.hold:
            d = defer.Deferred()
            self.hold[key].append(d)
            return d
        if key in self.records:
            return defer.succeed((self.records[key], [], []))
        if any(n == name for n, _ in self.records):
            return defer.succeed(([], [], []))  # the name exists: no data of that type
        return defer.fail(error.DNSNameError(name))

    def release(self, name: str, rtype: int) -> None:
        for d in self.hold.pop((name, rtype)):
            d.callback((self.records.get((name, rtype), []), [], []))

    def lookupNamingAuthorityPointer(self, name):  # noqa: N802 - twisted.names' names
        return self._answer(name, dns.NAPTR)

    def lookupService(self, name):  # noqa: N802
        return self._answer(name, dns.SRV)

    def lookupAddress(self, name):  # noqa: N802
        return self._answer(name, dns.A)

    def lookupIPV6Address(self, name):  # noqa: N802
        return self._answer(name, dns.AAAA)


def result_of(d: defer.Deferred):
    out = []
    d.addBoth(out.append)
    assert out, "the lookup did not finish"
    return out[0]


@pytest.fixture
def zone():
    z = Zone()
    z.add("a.example.test", dns.Record_A("127.0.0.11"))
    z.add("b.example.test", dns.Record_A("127.0.0.12"))
    z.add("v6.example.test", dns.Record_AAAA("::1"))
    z.add("example.test", dns.Record_A("127.0.0.10"))
    return z


def resolver(zone, clock=None, **kw):
    return SIPResolver(clock or task.Clock(), dns_client=zone, rng=random.Random(1), **kw)


def test_naptr_leads_to_srv_and_its_transport(zone):
    zone.add("example.test", dns.Record_NAPTR(10, 10, b"s", b"SIP+D2T", b"",
                                              b"_sip._tcp.example.test"))
    zone.add("example.test", dns.Record_NAPTR(20, 10, b"s", b"SIP+D2U", b"",
                                              b"_sip._udp.example.test"))
    zone.add("_sip._tcp.example.test", dns.Record_SRV(10, 0, 5070, b"b.example.test"))
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5080, b"a.example.test"))
    got = result_of(resolver(zone).locate("sip:bob@example.test"))
    assert got == Located(Peer("tcp", "127.0.0.12", 5070), "example.test")
    assert ("_sip._udp.example.test", dns.SRV) not in zone.asked  # NAPTR chose TCP


def test_without_naptr_srv_of_each_transport_in_our_order(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5080, b"a.example.test"))
    zone.add("_sip._tcp.example.test", dns.Record_SRV(10, 0, 5070, b"b.example.test"))
    r = resolver(zone)
    assert result_of(r.locate("sip:bob@example.test")).peer == Peer("udp", "127.0.0.11", 5080)
    big = result_of(r.locate("sip:bob@example.test", large=True))
    assert big.peer == Peer("tcp", "127.0.0.12", 5070)  # s.18.1.1: not UDP when large
    only_udp = result_of(r.locate("sip:bob@example.test", transports=frozenset({"tcp"})))
    assert only_udp.peer == Peer("tcp", "127.0.0.12", 5070)  # what our Via can name


def test_srv_priority_decides_the_target(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(20, 100, 5090, b"a.example.test"))
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 1, 5091, b"b.example.test"))
    for seed in range(10):
        r = SIPResolver(task.Clock(), dns_client=zone, rng=random.Random(seed))
        assert result_of(r.locate("sip:bob@example.test")).peer == \
            Peer("udp", "127.0.0.12", 5091)


def test_no_records_falls_back_to_the_domain_address_on_default_ports(zone):
    r = resolver(zone)
    assert result_of(r.locate("sip:bob@example.test")).peer == Peer("udp", "127.0.0.10", 5060)
    assert result_of(r.locate("sips:bob@example.test")).peer == Peer("tls", "127.0.0.10", 5061)
    assert result_of(r.locate("sip:bob@example.test;transport=tcp")).peer == \
        Peer("tcp", "127.0.0.10", 5060)
    asked = {n for n, _ in zone.asked}
    assert {"example.test", "_sip._udp.example.test", "_sip._tcp.example.test",
            "_sips._tcp.example.test"} <= asked


def test_sips_uri_looks_only_for_sips_services(zone):
    zone.add("example.test", dns.Record_NAPTR(10, 10, b"s", b"SIP+D2U", b"",
                                              b"_sip._udp.example.test"))
    zone.add("example.test", dns.Record_NAPTR(20, 10, b"s", b"SIPS+D2T", b"",
                                              b"_sips._tcp.example.test"))
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5080, b"a.example.test"))
    zone.add("_sips._tcp.example.test", dns.Record_SRV(10, 0, 5071, b"b.example.test"))
    got = result_of(resolver(zone).locate("sips:bob@example.test"))
    assert got == Located(Peer("tls", "127.0.0.12", 5071), "example.test")


def test_explicit_port_asks_only_for_the_address(zone):
    got = result_of(resolver(zone).locate("sip:bob@a.example.test:5099"))
    assert got.peer == Peer("udp", "127.0.0.11", 5099)
    assert {t for _, t in zone.asked} <= {dns.A, dns.AAAA}


def test_transport_param_skips_naptr_and_asks_that_srv_only(zone):
    zone.add("example.test", dns.Record_NAPTR(10, 10, b"s", b"SIP+D2U", b"",
                                              b"_sip._udp.example.test"))
    zone.add("_sip._tcp.example.test", dns.Record_SRV(10, 0, 5072, b"a.example.test"))
    got = result_of(resolver(zone).locate("sip:bob@example.test;transport=tcp"))
    assert got.peer == Peer("tcp", "127.0.0.11", 5072)
    assert ("example.test", dns.NAPTR) not in zone.asked


def test_maddr_name_is_the_target(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5082, b"b.example.test"))
    got = result_of(resolver(zone).locate("sip:bob@127.0.0.99;maddr=example.test"))
    assert got.peer == Peer("udp", "127.0.0.12", 5082)


def test_next_srv_target_is_used_when_the_first_has_no_address(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5083, b"gone.example.test"))
    zone.add("_sip._udp.example.test", dns.Record_SRV(20, 0, 5084, b"a.example.test"))
    got = result_of(resolver(zone).locate("sip:bob@example.test"))
    assert got.peer == Peer("udp", "127.0.0.11", 5084)


def test_address_family_we_listen_on_is_preferred(zone):
    zone.add("v6.example.test", dns.Record_A("127.0.0.16"))
    r = resolver(zone)
    assert result_of(r.locate("sip:b@v6.example.test:5060",
                              families={socket.AF_INET6})).peer.host == "::1"
    assert result_of(r.locate("sip:b@v6.example.test:5060",
                              families={socket.AF_INET})).peer.host == "127.0.0.16"


def test_service_refused_by_dot_target_fails_without_address_fallback(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(0, 0, 0, b"."))
    failure = result_of(resolver(zone).locate("sip:bob@example.test",
                                              transports=frozenset({"udp"})))
    assert isinstance(failure.value, TransportError)
    assert "offers no SIP service" in str(failure.value)


def test_unknown_domain_fails_with_transport_error(zone):
    failure = result_of(resolver(zone).locate("sip:bob@nowhere.test"))
    assert isinstance(failure.value, TransportError)
    assert "nowhere.test" in str(failure.value)


def test_dns_timeout_fails_at_once_and_is_not_cached(zone):
    zone.fail[("example.test", dns.NAPTR)] = error.DNSQueryTimeoutError(None)
    r = resolver(zone)
    failure = result_of(r.locate("sip:bob@example.test"))
    assert isinstance(failure.value, TransportError)
    assert "timed out" in str(failure.value)
    del zone.fail[("example.test", dns.NAPTR)]
    assert result_of(r.locate("sip:bob@example.test")).peer == Peer("udp", "127.0.0.10", 5060)


@pytest.mark.parametrize("refusal", [error.DNSQueryRefusedError, error.DNSServerError,
                                     error.DNSNotImplementedError])
def test_a_server_that_refuses_naptr_still_gets_the_srv_walk(zone, refusal):
    zone.fail[("example.test", dns.NAPTR)] = refusal(None)
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5087, b"a.example.test"))
    assert result_of(resolver(zone).locate("sip:bob@example.test")).peer == \
        Peer("udp", "127.0.0.11", 5087)


def test_a_failed_srv_lookup_fails_the_request(zone):
    zone.fail[("_sip._udp.example.test", dns.SRV)] = error.DNSServerError(None)
    failure = result_of(resolver(zone).locate("sip:bob@example.test"))
    assert isinstance(failure.value, TransportError)
    assert "_sip._udp.example.test" in str(failure.value)


def test_answers_are_cached_within_their_ttl(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5085, b"a.example.test"), ttl=60)
    clock = task.Clock()
    r = resolver(zone, clock, negative_ttl=600)
    result_of(r.locate("sip:bob@example.test"))
    sent = r.queries
    assert sent == 4  # NAPTR (none), SRV, A and AAAA of the target
    clock.advance(59)
    assert result_of(r.locate("sip:bob@example.test")).peer.port == 5085
    assert r.queries == sent
    clock.advance(2)  # the SRV's TTL (60 s) is over; the address's (300 s) is not
    zone.asked.clear()
    result_of(r.locate("sip:bob@example.test"))
    assert zone.asked == [("_sip._udp.example.test", dns.SRV)]


def test_negative_answers_are_kept_negative_ttl(zone):
    clock = task.Clock()
    r = resolver(zone, clock, negative_ttl=10)
    result_of(r.locate("sip:bob@nowhere.test"))
    sent = r.queries
    clock.advance(9)
    result_of(r.locate("sip:bob@nowhere.test"))
    assert r.queries == sent
    clock.advance(2)
    result_of(r.locate("sip:bob@nowhere.test"))
    assert r.queries > sent


def test_ttl_is_capped_by_max_ttl(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5085, b"a.example.test"),
             ttl=86400)
    clock = task.Clock()
    r = resolver(zone, clock, max_ttl=100)
    result_of(r.locate("sip:bob@example.test"))
    clock.advance(101)
    zone.asked.clear()
    result_of(r.locate("sip:bob@example.test"))
    assert ("_sip._udp.example.test", dns.SRV) in zone.asked


def test_cache_is_bounded_oldest_first():
    clock = task.Clock()
    cache = DNSCache(clock, max_entries=3)
    for i in range(10):
        cache.put((f"n{i}", 1), [i], 60)
        assert len(cache) <= 3
    assert cache.get(("n9", 1)) == [9]
    assert cache.get(("n0", 1)) is None
    cache.put(("zero", 1), [0], 0)  # TTL 0: not kept
    assert cache.get(("zero", 1)) is None
    with pytest.raises(ValueError):
        DNSCache(clock, max_entries=0)


def test_resolver_cache_stays_within_its_bound(zone):
    r = resolver(zone, max_cache_entries=5)
    for i in range(20):
        result_of(r.locate(f"sip:bob@h{i}.example.test"))
        assert len(r.cache) <= 5


def test_concurrent_identical_queries_share_one(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5086, b"a.example.test"))
    zone.hold[("example.test", dns.NAPTR)] = []
    r = resolver(zone)
    waiting = [r.locate("sip:bob@example.test") for _ in range(5)]
    assert zone.asked.count(("example.test", dns.NAPTR)) == 1
    zone.release("example.test", dns.NAPTR)
    assert [result_of(d).peer for d in waiting] == [Peer("udp", "127.0.0.11", 5086)] * 5


def test_lookups_in_progress_are_bounded(zone):
    for i in range(3):
        zone.hold[(f"h{i}.example.test", dns.NAPTR)] = []
        zone.add(f"h{i}.example.test", dns.Record_A(f"127.0.1.{i}"))
    r = resolver(zone, max_pending=2)
    first = [r.locate(f"sip:b@h{i}.example.test") for i in range(2)]
    over = result_of(r.locate("sip:b@h2.example.test"))
    assert isinstance(over.value, TransportError)
    assert "too many DNS lookups" in str(over.value)
    for i in range(2):
        zone.release(f"h{i}.example.test", dns.NAPTR)
    assert all(isinstance(result_of(d), Located) for d in first)


def test_hostile_answers_are_bounded_and_bad_records_skipped(zone):
    for i in range(200):  # only the first MAX_RECORDS are read
        zone.add("_sip._udp.example.test", dns.Record_SRV(10, 1, 6000 + i, b"a.example.test"))
    zone.add("_sip._tcp.example.test", dns.Record_SRV(1, 0, 0, b"a.example.test"))  # port 0
    got = result_of(resolver(zone).locate("sip:bob@example.test", transports=frozenset(
        {"udp", "tcp"}), large=True))
    assert got.peer.transport == "udp" and 6000 <= got.peer.port < 6032
    long_name = "sip:b@" + "a" * 250 + ".test"
    assert isinstance(result_of(resolver(zone).locate(long_name)).value, TransportError)


# -- configuration of the resolver --------------------------------------------------------

def test_parse_servers_accepts_ip_literals_with_optional_ports():
    assert parse_servers(["127.0.0.1", "127.0.0.2:5353", "[::1]:53", ("127.0.0.3", 54)]) == [
        ("127.0.0.1", 53), ("127.0.0.2", 5353), ("::1", 53), ("127.0.0.3", 54)]


@pytest.mark.parametrize("bad", [
    ["dns.example.test"], ["127.0.0.1:0"], ["127.0.0.1:70000"], [], "127.0.0.1",
    [("127.0.0.1", "53")], [("localhost", 53)], [53],
])
def test_parse_servers_refuses_what_cannot_be_a_dns_server(bad):
    with pytest.raises(ValueError, match="DNS server"):
        parse_servers(bad)


def test_resolver_settings_are_checked():
    with pytest.raises(ValueError):
        SIPResolver(task.Clock(), timeout=())
    with pytest.raises(ValueError):
        SIPResolver(task.Clock(), timeout=(100,))
    with pytest.raises(ValueError):
        SIPResolver(task.Clock(), max_pending=0)
    with pytest.raises(ValueError):
        SIPResolver(task.Clock(), servers=["not an ip"])


def test_no_query_and_no_timer_for_an_ip_host():
    """Making a resolver (every transport has one) sends nothing and leaves no timer: the
    DNS client is made when a name first needs it, and resolv.conf is re-read on use."""
    reactor = MemoryReactorClock()
    r = SIPResolver(reactor, servers=["127.0.0.1:5353"])
    assert result_of(r.locate("sip:bob@127.0.0.1")).peer == Peer("udp", "127.0.0.1", 5060)
    assert r.queries == 0
    assert reactor.getDelayedCalls() == [] and reactor.tcpClients == []


# -- through the transport ----------------------------------------------------------------

def test_transport_resolves_names_through_its_resolver(zone):
    zone.add("example.test", dns.Record_NAPTR(10, 10, b"s", b"SIP+D2T", b"",
                                              b"_sip._tcp.example.test"))
    zone.add("_sip._tcp.example.test", dns.Record_SRV(10, 0, 5075, b"b.example.test"))
    t = SIPTransport(MemoryReactor())
    t.resolver = resolver(zone)
    assert result_of(t.resolve("sip:bob@example.test")) == Peer("tcp", "127.0.0.12", 5075)
    assert result_of(t.resolve("sip:bob@127.0.0.1")) == Peer("udp", "127.0.0.1", 5060)
    failure = result_of(t.resolve("sip:bob@nowhere.test"))
    assert isinstance(failure.value, TransportError)


def test_transport_picks_srv_of_a_transport_it_listens_on(zone):
    """No listener: UDP first and no size upgrade (as for IP hosts); with only a TCP
    listener, only TCP records are used, small requests too (our Via must name it)."""
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5080, b"a.example.test"))
    zone.add("_sip._tcp.example.test", dns.Record_SRV(10, 0, 5070, b"b.example.test"))
    t = SIPTransport(MemoryReactor())
    t.resolver = resolver(zone)
    assert result_of(t.resolve("sip:bob@example.test", 2000)) == Peer("udp", "127.0.0.11", 5080)
    t.listen("tcp:127.0.0.1:5060")
    assert result_of(t.resolve("sip:bob@example.test", 2000)) == Peer("tcp", "127.0.0.12", 5070)
    assert result_of(t.resolve("sip:bob@example.test", 100)) == Peer("tcp", "127.0.0.12", 5070)
    t.stop()


# -- properties ---------------------------------------------------------------------------

SRV_RECORDS = st.lists(st.builds(SRVRecord, st.integers(0, 65535), st.integers(0, 65535),
                                 st.integers(1, 65535), st.sampled_from(["a", "b", "c", "."])),
                       max_size=20)


@settings(max_examples=200, deadline=None)
@given(SRV_RECORDS, st.integers(0, 2**32))
def test_srv_order_is_a_priority_sorted_permutation_of_the_usable_records(records, seed):
    ordered = order_srv(records, random.Random(seed))
    usable = [r for r in records if r.target != "."]
    assert sorted(ordered, key=repr) == sorted(usable, key=repr)
    assert [r.priority for r in ordered] == sorted(r.priority for r in ordered)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(NAPTRRecord, st.integers(0, 65535), st.integers(0, 65535),
                          st.sampled_from(["s", "S", "a", "", "u"]),
                          st.sampled_from(["SIP+D2U", "SIP+D2T", "SIPS+D2T", "SIP+D2S", "x"]),
                          st.sampled_from(["", "!a!b!"]), st.sampled_from(["n1", "n2", ""])),
                max_size=20),
       st.booleans())
def test_naptr_choices_only_name_usable_srv_records_once(records, large):
    order = ["tcp", "tls", "udp"] if large else ["udp", "tcp", "tls"]
    choices = naptr_choices(records, order, large)
    assert len(set(choices)) == len(choices)
    assert all(name in ("n1", "n2") and t in order for t, name in choices)
    if large and any(t != "udp" for t, _ in choices):
        assert choices[0][0] != "udp"


# -- the system's configuration ---------------------------------------------------------

def test_resolv_conf_nameservers_are_read_and_bounded(tmp_path):
    from msrp_gateway.sip.dns import read_resolv_conf

    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.test\nnameserver 127.0.0.53\n"
                    "nameserver not-an-ip\nnameserver ::1\nnameserver fe80::1%eth0\n"
                    "nameserver 127.0.0.54\n")
    assert read_resolv_conf(str(conf)) == [("127.0.0.53", 53), ("::1", 53), ("fe80::1", 53)]
    assert read_resolv_conf(str(tmp_path / "missing")) == [("127.0.0.1", 53)]


class SystemResolver:
    """A reactor.nameResolver (IHostnameResolver) answering from a dict."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    def resolveHostName(self, receiver, host, *args, **kw):  # noqa: N802
        from twisted.internet.address import IPv4Address

        self.asked.append(host)
        receiver.resolutionBegan(None)
        if host in self.table:
            receiver.addressResolved(IPv4Address("TCP", self.table[host], 0))
        receiver.resolutionComplete()


def test_default_mode_finds_hosts_without_srv_through_the_reactor_resolver():
    """Without DNS servers given, a host with a port, ``localhost`` or a single label is
    looked up as the gateway always did (getaddrinfo: hosts file, search domains), and no
    DNS query is sent for it."""
    clock = task.Clock()
    clock.nameResolver = SystemResolver({"host.example.test": "127.0.0.5",
                                         "localhost": "127.0.0.1", "proxy": "127.0.0.6"})
    r = SIPResolver(clock)
    assert result_of(r.locate("sip:b@host.example.test:5070")).peer == \
        Peer("udp", "127.0.0.5", 5070)
    assert result_of(r.locate("sips:b@localhost")).peer == Peer("tls", "127.0.0.1", 5061)
    assert result_of(r.locate("sip:b@proxy;transport=tcp")).peer == Peer("tcp", "127.0.0.6", 5060)
    failure = result_of(r.locate("sip:b@gone.example.test:5070"))
    assert isinstance(failure.value, TransportError)
    assert r.queries == 0 and clock.getDelayedCalls() == []
    assert clock.nameResolver.asked == ["host.example.test", "localhost", "proxy",
                                        "gone.example.test"]


def test_an_srv_target_written_as_an_ip_is_used_as_it_is(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5088, b"127.0.0.77"))
    assert result_of(resolver(zone).locate("sip:bob@example.test")).peer == \
        Peer("udp", "127.0.0.77", 5088)


def test_a_target_marked_unreachable_is_tried_after_the_others_until_it_expires(zone):
    """s.4.3: once the stack reports that a target failed, later requests go to the next
    SRV target; when every target is marked, the first is still used; marks expire."""
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5091, b"a.example.test"))
    zone.add("_sip._udp.example.test", dns.Record_SRV(20, 0, 5092, b"b.example.test"))
    clock = task.Clock()
    r = resolver(zone, clock)
    first, second = Peer("udp", "127.0.0.11", 5091), Peer("udp", "127.0.0.12", 5092)
    assert result_of(r.locate("sip:bob@example.test")).peer == first
    r.mark_unreachable(first, 30)
    assert result_of(r.locate("sip:bob@example.test")).peer == second
    r.mark_unreachable(second, 60)
    assert result_of(r.locate("sip:bob@example.test")).peer == first
    clock.advance(31)
    assert not r.is_unreachable(first) and r.is_unreachable(second)
    assert result_of(r.locate("sip:bob@example.test")).peer == first
    for i in range(2000):  # the list is bounded
        r.mark_unreachable(Peer("udp", "127.0.9.1", 1 + i))
    assert r.is_unreachable(Peer("udp", "127.0.9.1", 2000))
    assert not r.is_unreachable(Peer("udp", "127.0.9.1", 1))


def test_a_zone_with_many_naptr_records_costs_a_bounded_number_of_srv_queries(zone):
    for i in range(50):  # 50 NAPTRs to SRV names that do not exist
        zone.add("example.test", dns.Record_NAPTR(i, 0, b"s", b"SIP+D2U", b"",
                                                  f"_sip._udp.n{i}.example.test".encode()))
    got = result_of(resolver(zone).locate("sip:bob@example.test"))
    assert got.peer == Peer("udp", "127.0.0.10", 5060)  # no SRV: the domain's address
    assert sum(1 for _, t in zone.asked if t == dns.SRV) <= 6


def test_the_address_fallback_avoids_a_transport_the_domain_refused(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(0, 0, 0, b"."))  # no UDP here
    got = result_of(resolver(zone).locate("sip:bob@example.test",
                                          transports=frozenset({"udp", "tcp"})))
    assert got.peer == Peer("tcp", "127.0.0.10", 5060)


# -- stop() and the peers SRV chose -----------------------------------------------------------

class StoppableZone(Zone):
    """A Zone that, like the twisted.names client SIPResolver makes, can be stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.stops = 0

    def stop(self):
        self.stops += 1
        return defer.succeed(None)


def test_stop_fails_a_lookup_in_flight_at_once_and_asks_nothing_after():
    zone = StoppableZone()
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5093, b"a.example.test"))
    zone.add("a.example.test", dns.Record_A("127.0.0.11"))
    zone.hold[("example.test", dns.NAPTR)] = []
    r = resolver(zone)
    d = r.locate("sip:bob@example.test")
    assert not d.called and zone.asked == [("example.test", dns.NAPTR)]
    stopping = r.stop()
    failure = result_of(d)  # fired by stop() itself, not by the query
    assert isinstance(failure.value, DNSLookupError)  # a TransportError: the stack's 503
    assert str(failure.value) == "DNS resolver stopped (shutting down)"
    assert result_of(stopping) is None and zone.stops == 1
    zone.release("example.test", dns.NAPTR)  # a late answer changes nothing
    assert zone.asked == [("example.test", dns.NAPTR)]  # the walk went no further
    later = result_of(r.locate("sip:carol@example.test"))
    assert isinstance(later.value, DNSLookupError) and r.queries == 1


def test_stop_before_any_lookup_needs_no_dns_client():
    r = SIPResolver(task.Clock(), servers=["127.0.0.1:5353"])
    assert result_of(r.stop()) is None
    assert isinstance(result_of(r.locate("sip:bob@example.test")).value, DNSLookupError)


def test_found_by_srv_names_the_peers_srv_walks_chose_and_is_bounded(zone):
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5094, b"a.example.test"))
    zone.add("_sip._udp.other.test", dns.Record_SRV(10, 0, 5095, b"b.example.test"))
    zone.add("plain.test", dns.Record_A("127.0.0.13"))
    r = resolver(zone)
    srv_peer = result_of(r.locate("sip:bob@example.test")).peer
    fallback = result_of(r.locate("sip:bob@plain.test")).peer  # no SRV: the A record
    port_given = result_of(r.locate("sip:bob@a.example.test:5094")).peer
    assert srv_peer == Peer("udp", "127.0.0.11", 5094) == port_given
    assert r.found_by_srv(srv_peer)
    assert not r.found_by_srv(fallback) and fallback == Peer("udp", "127.0.0.13", 5060)
    assert not r.found_by_srv(Peer("tcp", "127.0.0.11", 5094))  # another transport

    r.mark_unreachable(srv_peer, 30)  # every target marked: still chosen, still SRV's
    assert result_of(r.locate("sip:bob@example.test")).peer == srv_peer
    assert r.found_by_srv(srv_peer)
    for i in range(4096):  # the memo is bounded (4096), oldest first out
        zone.add(f"_sip._udp.d{i}.test", dns.Record_SRV(10, 0, 1 + i, b"127.0.8.1"))
        assert result_of(r.locate(f"sip:bob@d{i}.test")).peer == Peer("udp", "127.0.8.1",
                                                                      1 + i)
    assert not r.found_by_srv(srv_peer)
    assert r.found_by_srv(Peer("udp", "127.0.8.1", 1)) and r.found_by_srv(
        Peer("udp", "127.0.8.1", 4096))


# -- s.4.3: the targets after the tried ones ---------------------------------------------

def three_targets(zone, name="_sip._udp.example.test", rtype_records=None):
    zone.add("c.example.test", dns.Record_A("127.0.0.13"))
    for prio, port, host in ((10, 5101, b"a.example.test"), (20, 5102, b"b.example.test"),
                             (30, 5103, b"c.example.test")):
        zone.add(name, dns.Record_SRV(prio, 0, port, host))
    return [Peer("udp", "127.0.0.11", 5101), Peer("udp", "127.0.0.12", 5102),
            Peer("udp", "127.0.0.13", 5103)]


def test_locate_excluding_tried_targets_gives_the_next_in_srv_order_then_none(zone):
    a, b, c = three_targets(zone)
    r = resolver(zone)
    assert result_of(r.locate("sip:bob@example.test")).peer == a
    assert result_of(r.locate("sip:bob@example.test", exclude=[a])).peer == b
    assert result_of(r.locate("sip:bob@example.test", exclude=[a, b])).peer == c
    assert r.found_by_srv(b) and r.found_by_srv(c)
    exhausted = result_of(r.locate("sip:bob@example.test", exclude=[a, b, c]))
    assert isinstance(exhausted.value, TargetsExhausted)
    assert isinstance(exhausted.value, TransportError)  # the stack's 503 if it gets there
    # never the domain's own address (s.4.2's fallback is for a domain without SRV)
    assert "every target of 'example.test' has been tried" in str(exhausted.value)


def test_excluded_targets_yield_to_unreachable_ones_last(zone):
    """An untried target marked unreachable (by another request) still comes after an
    untried reachable one, and is used when it is all that is left."""
    a, b, c = three_targets(zone)
    r = resolver(zone)
    r.mark_unreachable(b)
    assert result_of(r.locate("sip:bob@example.test", exclude=[a])).peer == c
    assert result_of(r.locate("sip:bob@example.test", exclude=[a, c])).peer == b


def test_when_one_srv_name_is_used_up_the_next_naptr_choice_follows(zone):
    zone.add("example.test", dns.Record_NAPTR(10, 10, b"s", b"SIP+D2T", b"",
                                              b"_sip._tcp.example.test"))
    zone.add("example.test", dns.Record_NAPTR(20, 10, b"s", b"SIP+D2U", b"",
                                              b"_sip._udp.example.test"))
    zone.add("_sip._tcp.example.test", dns.Record_SRV(10, 0, 5070, b"a.example.test"))
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5080, b"b.example.test"))
    r = resolver(zone)
    first = result_of(r.locate("sip:bob@example.test")).peer
    assert first == Peer("tcp", "127.0.0.11", 5070)
    assert result_of(r.locate("sip:bob@example.test", exclude=[first])).peer == \
        Peer("udp", "127.0.0.12", 5080)
    last = result_of(r.locate("sip:bob@example.test",
                              exclude=[first, Peer("udp", "127.0.0.12", 5080)]))
    assert isinstance(last.value, TargetsExhausted)


@pytest.mark.parametrize("uri", ["sip:bob@127.0.0.5:5070", "sip:bob@a.example.test:5070",
                                 "sip:bob@example.test"])
def test_a_uri_with_a_single_target_has_no_next_one(zone, uri):
    """An IP, a port given, or a domain without SRV (its own address): one target only."""
    r = resolver(zone)
    only = result_of(r.locate(uri)).peer
    assert isinstance(result_of(r.locate(uri, exclude=[only])).value, TargetsExhausted)
    assert result_of(r.locate(uri, exclude=[Peer("udp", "127.0.0.99", 1)])).peer == only


def test_exclude_holds_for_a_walk_that_waits_for_dns():
    """The tried peers are taken when locate is called, so a walk waiting for DNS still
    passes them over when its answers come."""
    zone = Zone()
    a, b, _ = three_targets(zone)
    zone.add("a.example.test", dns.Record_A("127.0.0.11"))
    zone.add("b.example.test", dns.Record_A("127.0.0.12"))
    zone.hold[("example.test", dns.NAPTR)] = []
    r = resolver(zone)
    waiting = r.locate("sip:bob@example.test", exclude=[a])
    assert not waiting.called
    zone.release("example.test", dns.NAPTR)
    assert result_of(waiting).peer == b
    assert result_of(r.locate("sip:bob@example.test")).peer == a  # nothing excluded


# -- SIPTransport.stop() stops its resolver ------------------------------------------------

def test_transport_stop_stops_the_resolver_it_was_given_and_a_second_stop_is_harmless():
    zone = StoppableZone()
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5093, b"a.example.test"))
    zone.hold[("example.test", dns.NAPTR)] = []
    t = SIPTransport(MemoryReactorClock())
    t.resolver = resolver(zone)
    waiting = t.resolve("sip:bob@example.test")
    assert not waiting.called
    assert result_of(t.stop()) is None
    assert isinstance(result_of(waiting).value, DNSLookupError)  # failed by the stop
    assert zone.stops == 1 and t.resolver.stopped
    assert isinstance(result_of(t.resolve("sip:carol@example.test")).value, DNSLookupError)
    # the service stops the resolver, then the transport (listeners last): no error
    assert result_of(t.resolver.stop()) is None and result_of(t.stop()) is None


def test_transport_stop_makes_no_resolver_when_none_was_used():
    """No resolver was needed (IP hosts only): stop() does not make one to stop it; one
    made later is fresh."""
    t = SIPTransport(MemoryReactorClock())
    assert result_of(t.resolve("sip:bob@127.0.0.1")) == Peer("udp", "127.0.0.1", 5060)
    assert result_of(t.stop()) is None
    assert not t.resolver.stopped
