"""service.py / tap.py on a MemoryReactor: what listens where, start-up failures, stop order."""

from __future__ import annotations

import pytest
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError, ConnectionLost
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.application.service import Application

from msrp_gateway import service, tap
from msrp_gateway.config import from_dict
from msrp_gateway.service import GatewayService, ListenerService, StartupError, build_service


class _Port:
    """A listening port that remembers being closed."""

    def __init__(self, kind, host, port):
        self.kind, self.host_, self.port_ = kind, host, port
        self.closed = False

    def getHost(self):
        from twisted.internet.address import IPv4Address
        return IPv4Address(self.kind, self.host_, self.port_)

    def stopListening(self):
        self.closed = True


class Reactor(MemoryReactorClock):
    """MemoryReactorClock that also records UDP listeners, and returns closable ports."""

    def __init__(self):
        super().__init__()
        self.udpServers = []
        self.ports = []

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        self.ports.append(_Port("TCP", interface, port))
        return self.ports[-1]

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udpServers.append((port, protocol, interface, maxPacketSize))
        self.ports.append(_Port("UDP", interface, port))
        return self.ports[-1]


def tcp_listeners(reactor):
    return {(interface, port): factory for port, factory, _backlog, interface
            in reactor.tcpServers}


def udp_listeners(reactor):
    return {(interface, port): proto for port, proto, interface, _size in reactor.udpServers}


def make(data=None):
    reactor = Reactor()
    root = build_service(from_dict(data or {}), reactor)
    return reactor, root


def test_nothing_listens_before_start():
    reactor, _root = make()
    assert reactor.tcpServers == [] and reactor.udpServers == []


def test_mi_listens_on_configured_http_address():
    reactor, root = make({"mi": {"http": "127.0.0.2:9099"}})
    root.startService()
    site = tcp_listeners(reactor)[("127.0.0.2", 9099)]
    assert type(site).__name__ == "MISite"
    root.stopService()


def test_msrp_listens_on_each_configured_socket():
    reactor, root = make({"msrp": {"socket": ["msrp:127.0.0.1:2855", "msrp:127.0.0.3:2999"],
                                   "my_uri": "msrp://127.0.0.1:2855;tcp"}})
    root.startService()
    listening = tcp_listeners(reactor)
    assert ("127.0.0.1", 2855) in listening and ("127.0.0.3", 2999) in listening
    root.stopService()
    assert all(p.closed for p in reactor.ports)


def test_sip_listens_on_each_configured_socket():
    reactor, root = make({"sip": {"socket": ["udp:127.0.0.1:5062", "tcp:127.0.0.4:5063"]}})
    root.startService()
    assert ("127.0.0.1", 5062) in udp_listeners(reactor)
    assert ("127.0.0.4", 5063) in tcp_listeners(reactor)
    d = root.stopService()
    assert d.called and all(p.closed for p in reactor.ports)


def test_tls_and_msrps_sockets_listen_with_the_tls_files(tmp_path):
    from tests.tlscerts import make_certs

    certs = make_certs(tmp_path)
    reactor, root = make({
        "sip": {"socket": ["tls:127.0.0.1:5071"]},
        "msrp": {"socket": ["msrps:127.0.0.1:2856"], "my_uri": "msrps://127.0.0.1:2856;tcp"},
        "tls": {"certificate": certs.certificate, "private_key": certs.private_key,
                "ca_certificates": certs.ca_certificates}})
    root.startService()
    ssl_ports = {(iface, port) for port, _f, _ctx, _b, iface in reactor.sslServers}
    assert ssl_ports == {("127.0.0.1", 5071), ("127.0.0.1", 2856)}
    root.stopService()


def test_relay_credentials_reach_the_relay_auth():
    """[msrp] relay_uri/relay_username/relay_password: starting connects to the relay and
    answers its RFC 4976 Digest challenge with those credentials (RFC 2617 qop=auth)."""
    import hashlib
    import re

    from twisted.internet.error import ConnectionDone
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    from msrp_gateway.msrp.message import parse_frames

    relay = "msrp://127.0.0.9:2857;tcp"
    reactor, root = make({"msrp": {"relay_uri": relay, "relay_username": "gw",
                                   "relay_password": "s3cret"}})
    assert reactor.tcpClients == []
    root.startService()
    [(_host, port, factory, _timeout, _bind)] = reactor.tcpClients
    assert port == 2857
    proto = factory.buildProtocol(None)
    wire = StringTransport()
    proto.makeConnection(wire)
    [first] = parse_frames(wire.value())
    assert first.method == "AUTH" and first.to_path == [relay]
    assert "Authorization" not in first.headers
    wire.clear()
    proto.dataReceived(
        f"MSRP {first.transaction_id} 401 Unauthorized\r\nTo-Path: {first.from_path[0]}\r\n"
        f"From-Path: {relay}\r\n"
        f'WWW-Authenticate: Digest realm="relay", nonce="n0nce", qop="auth"\r\n'
        f"-------{first.transaction_id}$\r\n".encode())
    [second] = parse_frames(wire.value())
    value = second.headers.get("Authorization")
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', value.partition(" ")[2]))
    assert params["username"] == "gw" and params["uri"] == relay

    def md5(text):
        return hashlib.md5(text.encode()).hexdigest()
    ha1, ha2 = md5("gw:relay:s3cret"), md5(f"AUTH:{relay}")
    assert params["response"] == md5(
        f"{ha1}:n0nce:{params['nc']}:{params['cnonce']}:auth:{ha2}")
    d = root.stopService()
    assert wire.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert d.called and reactor.getDelayedCalls() == []


def test_relay_is_contacted_at_start_even_without_an_msrp_listener():
    """Behind a relay no MSRP port is needed; AUTH still starts with the service, not
    with the first session (which would get 503)."""
    reactor, root = make({"msrp": {"socket": [], "relay_uri": "msrp://127.0.0.9:2857;tcp"}})
    assert reactor.tcpClients == []
    root.startService()
    assert [port for _h, port, *_ in reactor.tcpClients] == [2857]
    assert not any(port == 2855 for port, *_ in reactor.tcpServers)
    d = root.stopService()
    assert d.called and reactor.getDelayedCalls() == []


def test_msrps_relay_without_tls_files_is_a_startup_error():
    """The MSRP stack's own refusal of a relay_uri reaches twistd as one StartupError line
    (config.from_dict already refuses this; build_service may get settings built by hand)."""
    import dataclasses

    settings = from_dict({})
    msrp = dataclasses.replace(settings.msrp, relay_uri="msrps://127.0.0.9:2857;tcp")
    with pytest.raises(StartupError) as info:
        build_service(dataclasses.replace(settings, msrp=msrp), Reactor())
    assert "relay_uri" in str(info.value) and "[tls]" in str(info.value)


def test_gc_is_tuned_once_listening_and_restored_on_stop():
    """[process] defaults: after start the collector runs with (50000, 20, 1000) and the
    start-up heap frozen; stopping puts back what it found."""
    import gc

    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    reactor, root = make({"sip": {"socket": ["udp:127.0.0.1:5062"]}})
    root.startService()
    try:
        assert udp_listeners(reactor)  # listeners first, then the tuning
        assert gc.get_threshold() == (50000, 20, 1000)
        assert gc.get_freeze_count() > 0
    finally:
        d = root.stopService()
    assert d.called
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_gc_tuning_can_be_turned_off():
    import gc

    before = gc.get_threshold()
    _reactor, root = make({"process": {"gc_freeze": False, "gc_thresholds": []}})
    root.startService()
    try:
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    finally:
        root.stopService()


def test_gc_not_tuned_when_start_up_fails():
    import gc

    before = gc.get_threshold()
    root = build_service(from_dict({}), _TakenReactor())
    with pytest.raises(StartupError):
        root.startService()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_whole_chain_is_wired():
    """SIP stack -> router -> gateway -> UA -> SIP and MSRP stacks."""
    _reactor, root = make()
    assert root.sip.router is root.router
    assert root.router.gw is root.gateway
    assert root.gateway.ua is root.ua


def test_gateway_settings_reach_the_gateway():
    _reactor, root = make({"msrp_gateway": {"hash_size": 3, "cleanup_interval": 7,
                                            "max_sessions": 9, "failure_message": False,
                                            "max_queued_bytes": 100, "stop_timeout": 1.5}})
    s = root.gateway.settings
    assert (s.hash_size, s.cleanup_interval, s.max_sessions, s.failure_message,
            s.max_queued_bytes, s.stop_timeout) == (3, 7, 9, False, 100, 1.5)


def test_msrp_layer_bounds_reach_the_msrp_stack():
    _reactor, root = make({"msrp": {"frame_timeout": 7, "max_connections": 3,
                                    "max_reassembly_bytes": 5 * 1024 * 1024,
                                    "max_message_size": 4 * 1024 * 1024}})
    s = root.msrp.settings
    assert (s.frame_timeout, s.max_connections, s.max_reassembly_bytes) == (
        7.0, 3, 5 * 1024 * 1024)
    assert root.msrp.reassembly_budget.limit == 5 * 1024 * 1024


def test_msrp_connect_timeout_bounds_the_stacks_connect_and_tls_handshake():
    _reactor, root = make({"msrp": {"connect_timeout": 2.5}})
    assert root.msrp.connect_timeout == 2.5
    _reactor, default = make()
    assert default.msrp.connect_timeout == 10.0


def test_msrp_max_connections_refuses_inbound_connections_beyond_it():
    reactor, root = make({"msrp": {"socket": ["msrp:127.0.0.1:2855"], "max_connections": 1}})
    root.startService()
    factory = tcp_listeners(reactor)[("127.0.0.1", 2855)]
    first = factory.buildProtocol(IPv4Address("TCP", "127.0.0.5", 40000))
    first.makeConnection(StringTransport())
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.6", 40001)) is None
    assert root.msrp.connection_count() == 1
    root.stopService()


def test_gateway_sweep_runs_on_the_given_reactor_and_stops():
    reactor, root = make({"msrp_gateway": {"cleanup_interval": 5}})
    root.startService()
    assert any(c.getTime() == 5 for c in reactor.getDelayedCalls())
    root.stopService()
    assert reactor.getDelayedCalls() == []


def test_routing_script_that_does_not_load_stops_start_up(tmp_path):
    script = tmp_path / "route.py"
    script.write_text("def route(req, gw):\n    return (\n")
    with pytest.raises(StartupError) as info:
        build_service(from_dict({"routing": {"script": str(script)}}), Reactor())
    assert str(info.value) == (f"routing script {script}:2: syntax error: "
                               "'(' was never closed")


def test_message_from_untrusted_source_gets_403_through_the_wired_router():
    """A request reaching the wired stack's router is routed by the default route."""
    from msrp_gateway.sip.message import parse_message
    from msrp_gateway.sip.transport import Peer

    reactor, root = make({"routing": {"trusted": ["10.0.0.0/8"]}})
    sent = []
    root.sip.transport.send = lambda msg, peer: sent.append((msg, peer)) or defer.succeed(None)
    root.startService()
    req = parse_message(
        b"MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKabc123\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a\r\n"
        b"To: <sip:bob@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
    root.sip.transport.on_message(req, Peer("udp", "127.0.0.1", 5099))
    assert [m.status for m, _p in sent] == [403]
    root.stopService()


def test_mi_off_when_http_is_empty():
    reactor, root = make({"mi": {"http": ""}})
    root.startService()
    assert ("127.0.0.1", 8888) not in tcp_listeners(reactor)
    root.stopService()


def test_mi_log_level_command_changes_the_shared_level_control():
    """The MI's log_level and the log observer's filter are one object (what twistd uses)."""
    _reactor, root = make({"log": {"level": "warn"}})
    assert root.log_control.predicate.logLevelForNamespace("x") == LogLevel.warn
    root.log_control.set_level(4)
    assert root.log_control.predicate.logLevelForNamespace("x") == LogLevel.debug


def test_listener_is_closed_on_stop():
    reactor, root = make()
    root.startService()
    assert reactor.ports and not any(p.closed for p in reactor.ports)
    d = root.stopService()
    assert d.called
    assert all(p.closed for p in reactor.ports)


class _TakenReactor(MemoryReactorClock):
    def listenTCP(self, port, factory, backlog=50, interface=""):
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


def test_taken_port_fails_start_up_with_one_line():
    root = build_service(from_dict({}), _TakenReactor())
    with pytest.raises(StartupError) as info:
        root.startService()
    assert str(info.value) == ("cannot listen on msrp:127.0.0.1:2855: "
                               "[Errno 98] Address already in use")
    assert not root.running


def test_failed_start_closes_what_did_open():
    reactor = MemoryReactorClock()
    root = GatewayService(from_dict({}), reactor)
    first = ListenerService("first", lambda: reactor.listenTCP(1111, object()))
    first.setServiceParent(root)

    def taken():
        raise CannotListenError("127.0.0.1", 2222, OSError(98, "Address already in use"))
    ListenerService("second", taken).setServiceParent(root)
    with pytest.raises(StartupError):
        root.startService()
    assert not first.running and first.port is None


class _Recorder(Service):
    def __init__(self, name, order, deferred=None):
        self.setName(name)
        self.order = order
        self.deferred = deferred

    def stopService(self):
        super().stopService()
        self.order.append(self.name)
        return self.deferred


def test_first_to_stop_finishes_before_the_rest_stop():
    """The gateway's BYEs go out while listeners are still open."""
    root = GatewayService(from_dict({}), MemoryReactorClock())
    order: list[str] = []
    pending: defer.Deferred[None] = defer.Deferred()
    _Recorder("listener", order).setServiceParent(root)
    gw = _Recorder("gateway", order, pending)
    gw.setServiceParent(root)
    root.first_to_stop.append(gw)
    root.startService()
    d = root.stopService()
    assert order == ["gateway"] and not d.called
    pending.callback(None)
    assert order == ["gateway", "listener"] and d.called


# --- tap ---------------------------------------------------------------------------------

def test_options_reject_unknown_log_level():
    opts = tap.Options()
    with pytest.raises(usage.UsageError) as info:
        opts.parseOptions(["--log-level", "loud"])
    assert "--log-level: expected one of debug, info, warn, error, critical" in str(info.value)


def test_make_service_on_bundled_config_uses_given_reactor():
    reactor = Reactor()
    opts = tap.Options()
    opts.parseOptions([])
    svc = tap.makeService(opts, reactor=reactor)
    svc.startService()
    assert ("127.0.0.1", 8888) in tcp_listeners(reactor)
    svc.stopService()


def test_make_service_with_bad_config_prints_one_line_and_exits(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[msrp_gateway]\nhash_size = 0\n")
    opts = tap.Options()
    opts.parseOptions(["--config", str(path)])
    with pytest.raises(SystemExit) as info:
        tap.makeService(opts, reactor=MemoryReactorClock())
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err == (f"msrpgw: configuration error: {path}: [msrp_gateway] hash_size: expected "
                   "a number from 1 to 20, found 0\n")


def test_log_level_option_overrides_config_and_reaches_twistds_observer(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[log]\nlevel = "debug"\n[mi]\nhttp = ""\n')

    class Parent(dict):
        pass
    opts = tap.Options()
    opts.parseOptions(["--config", str(path), "--log-level", "error"])
    opts.parent = Parent(logfile=str(tmp_path / "gw.log"), nodaemon=True, syslog=False,
                         logger=None)
    svc = tap.makeService(opts, reactor=MemoryReactorClock())
    app = Application("msrpgw")
    svc.setServiceParent(app)
    observer = app.getComponent(ILogObserver)
    assert observer is not None
    observer({"log_level": LogLevel.warn, "log_namespace": "t", "log_format": "quiet",
              "log_time": 0.0})
    observer({"log_level": LogLevel.error, "log_namespace": "t", "log_format": "loud",
              "log_time": 0.0})
    text = (tmp_path / "gw.log").read_text()
    assert "loud" in text and "quiet" not in text


def test_clean_reactor_check_sees_a_pending_call_and_an_open_port():
    """tests/conftest.py's check is not vacuous: it sees a timer and a listening port."""
    import importlib.util
    from pathlib import Path

    from twisted.internet import reactor
    from twisted.internet.protocol import Factory

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("msrpgw_tests_conftest", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    call = reactor.callLater(60, lambda: None)
    port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    try:
        assert call in check._pending_calls(reactor)
        assert port in check._selectables(reactor)
    finally:
        call.cancel()
        port.stopListening()
    assert call not in check._pending_calls(reactor)
    assert port not in check._selectables(reactor)  # closing: let pass


def test_sip_timers_and_bounds_reach_the_sip_stack_and_transport():
    from msrp_gateway.sip.transaction import TimerSettings
    _reactor, root = make({"sip": {"timer_t1": 0.05, "timer_t2": 1.0, "timer_t4": 2.0,
                                   "max_completed": 77, "max_dialogs": 100000,
                                   "connect_timeout": 3, "max_pending_per_connection": 5,
                                   "max_write_backlog": 65536}})
    assert root.sip.timers == TimerSettings(0.05, 1.0, 2.0)
    assert (root.sip.max_completed, root.sip.max_dialogs) == (77, 100000)
    t = root.sip.transport
    assert (t.connect_timeout, t.max_pending_per_connection, t.max_write_backlog) == (
        3.0, 5, 65536)


def test_msrp_per_connection_bounds_reach_the_msrp_stack():
    _reactor, root = make({"msrp": {"max_in_flight": 3, "max_send_queue_bytes": 8192,
                                    "max_send_queue": 9}})
    s = root.msrp.settings
    assert (s.max_inflight, s.max_queued_bytes, s.max_queued_messages) == (3, 8192, 9)


def test_gateway_bounds_reach_the_gateway():
    _reactor, root = make({"msrp_gateway": {"max_pending_messages": 4,
                                            "max_queued_messages": 2}})
    s = root.gateway.settings
    assert (s.max_pending_messages, s.max_queued_messages) == (4, 2)



class _Slow(Service):
    """Takes `delay` seconds of the reactor's clock to stop; notes the budget left then."""

    def __init__(self, name, reactor, root, delay, seen):
        self.setName(name)
        self.reactor, self.root, self.delay, self.seen = reactor, root, delay, seen

    def stopService(self):
        super().stopService()
        d = defer.Deferred()

        def done():
            self.seen.append(self.root.stop_time_left())
            d.callback(None)
        self.reactor.callLater(self.delay, done)
        return d


def test_stop_steps_share_one_stop_timeout_budget():
    """The UA's BYE wait gets what is left of stop_timeout after the gateway's own wait,
    not a fresh stop_timeout (SIGTERM stays within stop_timeout, not a multiple of it)."""
    reactor, root = make({"msrp_gateway": {"stop_timeout": 5.0}})
    seen: list[float] = []
    first = _Slow("slow-1", reactor, root, 3.0, seen)
    second = _Slow("slow-2", reactor, root, 4.0, seen)
    for svc in (first, second):
        svc.setServiceParent(root)
    root.first_to_stop[:0] = [first, second]
    assert root.stop_time_left() == 5.0
    root.startService()
    d = root.stopService()
    reactor.advance(3.0)
    reactor.advance(4.0)
    assert seen == [2.0, 0.0]
    reactor.advance(0)
    assert d.called


def test_dns_settings_reach_the_sip_resolver_and_no_dns_socket_opens_at_start():
    reactor, root = make({"sip": {"dns_servers": ["127.0.0.53", "[::1]:5353"],
                                  "dns_cache_size": 99}})
    resolver = root.sip.transport.resolver
    assert resolver.servers == [("127.0.0.53", 53), ("::1", 5353)]
    assert resolver.cache.max_entries == 99
    root.startService()
    assert set(udp_listeners(reactor)) == {("127.0.0.1", 5060)}  # SIP's only
    root.stopService()


def test_without_dns_servers_the_resolver_follows_resolv_conf():
    _reactor, root = make()
    resolver = root.sip.transport.resolver
    assert resolver.servers is None and resolver.cache.max_entries == 4096


def test_stopping_the_service_stops_the_resolver_after_the_sip_stack():
    """Lookups in flight fail at shutdown (the resolver is stopped), once the SIP stack
    has stopped its transactions; a lookup after that fails at once."""
    reactor, root = make({"sip": {"dns_servers": ["127.0.0.53"]}})
    order = [svc.name for svc in root.first_to_stop]
    assert order.index("sip-dns") == order.index("sip-stack") + 1
    root.startService()
    d = root.stopService()
    assert d.called
    later = root.sip.transport.resolver.locate("sip:bob@example.test")
    failures = []
    later.addErrback(failures.append)
    assert [f.getErrorMessage() for f in failures] == ["DNS resolver stopped (shutting down)"]
    assert reactor.getDelayedCalls() == []


def _stuck_msrp_connection(reactor, root):
    """An accepted MSRP connection whose peer stopped reading: `loseConnection` on it
    never completes (unsent bytes), as with a frozen or stalled peer."""
    factory = tcp_listeners(reactor)[("127.0.0.1", 2855)]
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.9", 40000))
    wire = StringTransport()  # loseConnection only marks it disconnecting: never lost
    proto.makeConnection(wire)
    assert root.msrp.connection_count() == 1
    return proto, wire


def test_sigterm_with_a_connection_that_never_closes_ends_within_stop_timeout_and_grace():
    """msrp.stop waits for every connection to close, and one with unsent bytes to a peer
    that stopped reading never does: shutdown stops waiting for it stop_timeout +
    STOP_GRACE after stopping began (it hung for ever before), says so, leaves no timer."""
    from twisted.logger import globalLogPublisher

    reactor, root = make({"msrp": {"socket": ["msrp:127.0.0.1:2855"]},
                          "msrp_gateway": {"stop_timeout": 2.0}})
    root.startService()
    proto, wire = _stuck_msrp_connection(reactor, root)
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        d = root.stopService()
        assert wire.disconnecting  # asked to close, and it will not
        reactor.advance(2.0 + service.STOP_GRACE - 0.01)
        assert not d.called
        reactor.advance(0.01)
        assert d.called
    finally:
        globalLogPublisher.removeObserver(seen.append)
    gave_up = [e["name"] for e in seen if "not waiting for it" in e.get("log_format", "")]
    assert gave_up == ["msrp"]
    assert any("msrpgw stopped" in e.get("log_format", "") for e in seen)
    # the reactor's shutdown drops what is still open; then nothing of ours is left
    proto.connectionLost(Failure(ConnectionLost("reactor shutting down")))
    assert root.msrp.connection_count() == 0 and reactor.getDelayedCalls() == []


def test_every_stop_step_shares_the_one_bound_even_a_step_that_never_finishes():
    """A first-to-stop step that never fires (a gateway or UA stop gone wrong) and a rest
    step that never fires do not add up: all waits end stop_timeout + STOP_GRACE after
    stopping began, each step that overran is logged by name."""
    from twisted.logger import globalLogPublisher

    reactor = MemoryReactorClock()
    root = GatewayService(from_dict({"msrp_gateway": {"stop_timeout": 3.0}}), reactor)
    order: list[str] = []
    hung_first = _Recorder("hung-first", order, defer.Deferred())
    quick_first = _Recorder("quick-first", order)
    hung_rest = _Recorder("hung-rest", order, defer.Deferred())
    for svc in (hung_rest, hung_first, quick_first):
        svc.setServiceParent(root)
    root.first_to_stop += [hung_first, quick_first]
    root.startService()
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        d = root.stopService()
        reactor.advance(3.0 + service.STOP_GRACE - 0.01)
        assert order == ["hung-first"] and not d.called
        # the first step is given up on here; the rest, with no time left, at once
        reactor.advance(0.01)
        assert order == ["hung-first", "quick-first", "hung-rest"] and d.called
    finally:
        globalLogPublisher.removeObserver(seen.append)
    gave_up = [e["name"] for e in seen if "not waiting for it" in e.get("log_format", "")]
    assert gave_up == ["hung-first", "hung-rest"]
    assert reactor.getDelayedCalls() == []


def test_a_stop_step_that_fails_is_logged_and_the_rest_still_stop():
    from twisted.logger import globalLogPublisher

    reactor = MemoryReactorClock()
    root = GatewayService(from_dict({}), reactor)
    order: list[str] = []
    broken = _Recorder("broken", order, defer.fail(RuntimeError("boom")))
    _Recorder("listener", order).setServiceParent(root)
    broken.setServiceParent(root)
    root.first_to_stop.append(broken)
    root.startService()
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        d = root.stopService()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert order == ["broken", "listener"] and d.called
    assert reactor.getDelayedCalls() == []
    failed = [e for e in seen if "failed" in e.get("log_format", "")]
    assert [(e["name"], e["log_failure"].getErrorMessage()) for e in failed] == [
        ("broken", "boom")]
