"""Two SIP stacks over the real transport on 127.0.0.1 (UDP and TCP): MESSAGE, OPTIONS,
and an INVITE / 200 / ACK / BYE dialog in both directions."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from bench.ports import free_port
from msrp_gateway.sip.stack import SIPStack
from msrp_gateway.sip.transport import SIPTransport

# a bound only ever waited out when something is broken: generous, so a slow CI run passes
TIMEOUT = 30.0


def with_timeout(d: defer.Deferred) -> defer.Deferred:
    return d.addTimeout(TIMEOUT, reactor)


class Node:
    """A transport listening on UDP and TCP (free ports) with a stack on top.

    A UDP-only node binds a port from `free_port()` (checked free for TCP too, below the
    ephemeral range): a large request to it tries TCP on the same number first, which must
    be refused, not reach some other process's listener."""

    def __init__(self, router, kinds=("udp", "tcp")) -> None:
        self.transport = SIPTransport(reactor)
        udp_port = 0 if "tcp" in kinds else free_port()
        self.transport.listen(f"udp:127.0.0.1:{udp_port}")
        udp_port = self.port("udp")
        # TCP on another port: the Contact of a TCP dialog must name it (contact_for)
        if "tcp" in kinds:
            self.transport.listen("tcp:127.0.0.1:0")
        self.stack = SIPStack(reactor, self.transport,
                              local_uri_host=f"127.0.0.1:{udp_port}", router=router)

    def port(self, kind: str) -> int:
        return next(p.port for p in self.transport.listening if p.transport == kind)

    def uri(self, user: str, kind: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.port(kind)};transport={kind}"

    def close(self) -> defer.Deferred:
        self.stack.stop()
        return self.transport.stop()


def made_and_closed(build):
    """A node fixture's body: yields `make(...)` = `build(...)`, and at teardown closes
    every node made (`close()` -> Deferred). test_sip_dns's nodes use it too."""
    made = []

    def make(*args, **kw):
        made.append(build(*args, **kw))
        return made[-1]

    yield make
    for n in made:
        pytest_twisted.blockon(n.close())


@pytest.fixture
def nodes():
    """`nodes(router, kinds=("udp", "tcp"))` -> a Node, closed after the test."""
    yield from made_and_closed(Node)


class Gateway:
    """A router that answers MESSAGE 200 and INVITE with a dialog, recording what it saw."""

    def __init__(self) -> None:
        self.node: Node | None = None
        self.messages: list[bytes] = []
        self.dialogs: list = []
        self.byes: list = []
        self.vias: list[str] = []  # the transport each request's top Via named

    def route(self, txn) -> None:
        req = txn.request
        self.vias.append(req.top_via.protocol)
        if req.method == "MESSAGE":
            self.messages.append(req.body)
            txn.respond(200)
        elif req.method == "INVITE":
            dialog = self.node.stack.accept(txn, body=b"answer", content_type="application/sdp")
            dialog.on_bye = lambda: self.byes.append(dialog)
            self.dialogs.append(dialog)
        else:
            txn.respond(405)


@pytest.mark.parametrize("kind", ["udp", "tcp"])
@pytest_twisted.ensureDeferred
async def test_message_over_real_transport_gets_200_once(nodes, kind):
    gw = Gateway()
    gw.node = server = nodes(gw.route)
    client = nodes(lambda txn: txn.respond(405))
    req = client.stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                   server.uri("gw", kind), body=b"hello " + kind.encode(),
                                   content_type="text/plain")
    resp = await with_timeout(client.stack.send_request(req))
    assert resp.status == 200
    assert gw.messages == [b"hello " + kind.encode()]
    # OPTIONS is answered by the stack itself
    opt = client.stack.new_request("OPTIONS", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                   server.uri("gw", kind))
    resp = await with_timeout(client.stack.send_request(opt))
    assert resp.status == 200 and "MESSAGE" in resp.headers.get("Allow")
    if kind == "tcp":
        assert client.transport.connection_count == 1  # both requests reused one connection


@pytest.mark.parametrize("kind", ["udp", "tcp"])
@pytest_twisted.ensureDeferred
async def test_invite_dialog_200_ack_and_bye_over_real_transport(nodes, kind):
    gw = Gateway()
    gw.node = server = nodes(gw.route)
    client = nodes(lambda txn: txn.respond(405))
    invite = client.stack.new_request("INVITE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                      server.uri("gw", kind), body=b"offer",
                                      content_type="application/sdp")
    ic = client.stack.invite(invite)
    dialog = await with_timeout(ic.deferred)
    assert dialog.remote_sdp == b"answer"
    (uas,) = gw.dialogs
    await with_timeout(uas.confirmed)  # our ACK reached the UAS and stopped its 200
    assert uas.remote_sdp == b"offer" and uas.remote_tag == dialog.local_tag
    resp = await with_timeout(dialog.bye())
    assert resp.status == 200
    assert gw.byes == [uas] and uas.terminated and dialog.terminated


@pytest.mark.parametrize("kind", ["udp", "tcp"])
@pytest_twisted.ensureDeferred
async def test_bye_from_the_uas_side_ends_the_uac_dialog(nodes, kind):
    gw = Gateway()
    gw.node = server = nodes(gw.route)
    ended = []
    client = nodes(lambda txn: txn.respond(405))
    invite = client.stack.new_request("INVITE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                      server.uri("gw", kind), body=b"offer",
                                      content_type="application/sdp")
    dialog = await with_timeout(client.stack.invite(invite).deferred)
    dialog.on_bye = lambda: ended.append(True)
    (uas,) = gw.dialogs
    await with_timeout(uas.confirmed)
    resp = await with_timeout(uas.bye())
    assert resp.status == 200 and ended == [True]


@pytest_twisted.ensureDeferred
async def test_invite_to_a_closed_tcp_port_fails_with_transport_error(nodes):
    from msrp_gateway.sip.stack import SIPTransportError

    client = nodes(lambda txn: txn.respond(405))
    # below the ephemeral range and checked free: no socket of ours or the OS's will take it
    port = free_port()
    req = client.stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                   f"sip:gw@127.0.0.1:{port};transport=tcp")
    with pytest.raises(SIPTransportError):
        await with_timeout(client.stack.send_request(req))


# -- s.18.1.1: large requests, TCP and the fallback to UDP --------------------------------

BIG = b"x" * 2000  # over the 1300-byte limit: s.18.1.1 moves the request to TCP


@pytest_twisted.ensureDeferred
async def test_a_large_message_to_a_udp_only_peer_is_retried_over_udp_after_tcp_is_refused(nodes):
    """The audit's case: a 2,000-byte MESSAGE (a SEND turned into SIP) toward a peer that
    listens on UDP only failed 503; s.18.1.1 says retry over UDP with the Via changed."""
    gw = Gateway()
    gw.node = server = nodes(gw.route, kinds=("udp",))
    client = nodes(lambda txn: txn.respond(405))  # UDP and TCP: it tries TCP first
    req = client.stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                   f"sip:gw@127.0.0.1:{server.port('udp')}", body=BIG,
                                   content_type="text/plain")
    resp = await with_timeout(client.stack.send_request(req))
    assert resp.status == 200
    assert gw.messages == [BIG] and gw.vias == ["UDP"]
    assert client.transport.connection_count == 0


@pytest_twisted.ensureDeferred
async def test_a_large_invite_to_a_udp_only_peer_is_retried_over_udp(nodes):
    gw = Gateway()
    gw.node = server = nodes(gw.route, kinds=("udp",))
    client = nodes(lambda txn: txn.respond(405))
    invite = client.stack.new_request("INVITE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                      f"sip:gw@127.0.0.1:{server.port('udp')}", body=BIG,
                                      content_type="application/sdp")
    dialog = await with_timeout(client.stack.invite(invite).deferred)
    assert dialog.remote_sdp == b"answer" and gw.vias == ["UDP"]
    (uas,) = gw.dialogs
    # the Contact names our UDP listener, so the callee's in-dialog requests use UDP too
    assert uas.remote_target == f"sip:127.0.0.1:{client.port('udp')}"
    await with_timeout(uas.confirmed)
    assert (await with_timeout(dialog.bye())).status == 200


@pytest_twisted.ensureDeferred
async def test_transport_tcp_in_the_uri_is_not_retried_over_udp(nodes):
    from msrp_gateway.sip.stack import SIPTransportError

    gw = Gateway()
    gw.node = server = nodes(gw.route, kinds=("udp",))
    client = nodes(lambda txn: txn.respond(405))
    req = client.stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                   f"sip:gw@127.0.0.1:{server.port('udp')};transport=tcp",
                                   body=BIG, content_type="text/plain")
    with pytest.raises(SIPTransportError, match="cannot connect"):
        await with_timeout(client.stack.send_request(req))
    assert gw.messages == []


@pytest_twisted.ensureDeferred
async def test_without_a_tcp_listener_a_large_request_stays_on_udp(nodes):
    """Our Via could not name a TCP sent-by, so the request is not moved to TCP at all."""
    gw = Gateway()
    gw.node = server = nodes(gw.route)
    client = nodes(lambda txn: txn.respond(405), kinds=("udp",))
    req = client.stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                   f"sip:gw@127.0.0.1:{server.port('udp')}", body=BIG,
                                   content_type="text/plain")
    assert (await with_timeout(client.stack.send_request(req))).status == 200
    assert gw.messages == [BIG] and gw.vias == ["UDP"]
    assert server.transport.connection_count == 0


@pytest.mark.parametrize("kinds", [("udp",), ("udp", "tcp")], ids=["udp-only", "tcp-refused"])
@pytest_twisted.ensureDeferred
async def test_a_request_larger_than_a_udp_datagram_still_fails_clearly(nodes, kinds):
    from msrp_gateway.sip.stack import SIPTransportError

    gw = Gateway()
    gw.node = server = nodes(gw.route, kinds=("udp",))
    client = nodes(lambda txn: txn.respond(405), kinds=kinds)
    req = client.stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:gw@127.0.0.1",
                                   f"sip:gw@127.0.0.1:{server.port('udp')}",
                                   body=b"x" * 70000, content_type="text/plain")
    with pytest.raises(SIPTransportError, match="UDP datagram"):
        await with_timeout(client.stack.send_request(req))
    assert gw.messages == []
