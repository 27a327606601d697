"""stats.py and the counters the stacks keep: the registry's selection/reset rules, and the
numbers moving when the real SIP stack, MSRP sessions and gateway handle traffic on
task.Clock against in-memory fakes (no sockets)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from twisted.internet import task

from msrp_gateway.gateway import OK, Gateway, GatewaySettings
from msrp_gateway.msrp.message import MSRPRequest, MSRPResponse
from msrp_gateway.msrp.session import MSRPSession
from msrp_gateway.routing import RequestView
from msrp_gateway.sip.message import (
    Headers,
    SIPParseError,
    SIPRequest,
    SIPResponse,
    make_response,
)
from msrp_gateway.sip.stack import SIPStack
from msrp_gateway.stats import (
    GatewayCounters,
    MSRPStats,
    SIPCounters,
    Stat,
    Statistics,
    StatsNotFound,
    register_gateway,
    register_msrp,
    register_sip,
)
from msrp_gateway.testing import (
    FakeIncomingMessage,
    FakePeer,
    FakeServerTransaction,
    FakeSIPSender,
    FakeSIPTransport,
    FakeUA,
)
from tests import msrp_session_fakes as fakes

# ---- the registry -----------------------------------------------------------------------


def full_registry(inuse: list[int] | None = None) -> tuple[Statistics, SIPCounters,
                                                            MSRPStats, GatewayCounters]:
    stats = Statistics()
    sip, msrp, gw = SIPCounters(), MSRPStats(), GatewayCounters()
    live = inuse if inuse is not None else [0]
    register_sip(stats, sip, inuse=lambda: live[0])
    register_msrp(stats, msrp, active=lambda: 7)
    register_gateway(stats, gw, active=lambda: 3)
    return stats, sip, msrp, gw


def test_all_lists_every_statistic_with_opensips_names_in_group_order() -> None:
    stats, *_ = full_registry()
    names = list(stats.get(["all"]))
    assert names[:6] == ["core:rcv_requests", "core:rcv_replies", "core:drop_requests",
                         "core:drop_replies", "core:err_requests", "core:err_replies"]
    for name in ("tm:received_replies", "tm:local_replies", "tm:UAS_transactions",
                 "tm:UAC_transactions", "tm:2xx_transactions", "tm:6xx_transactions",
                 "tm:inuse_transactions", "msrp:active_sessions", "msrp:sends_received",
                 "msrp:sends_sent", "msrp:reports_sent", "msrp:failure_reports_sent",
                 "msrp_gateway:active_sessions", "msrp_gateway:sessions_created",
                 "msrp_gateway:sessions_setup_failed", "msrp_gateway:messages_to_msrp",
                 "msrp_gateway:messages_to_sip", "msrp_gateway:messages_failed"):
        assert name in names
    assert "tm:relayed_replies" not in names  # we never proxy: no always-zero statistic
    assert stats.groups() == ["core", "tm", "msrp", "msrp_gateway"]
    assert len(stats) == len(names)


def test_group_prefix_bare_name_and_full_name_select_as_opensips() -> None:
    stats, sip, _, _ = full_registry([5])
    sip.rcv_requests = 4
    assert list(stats.get(["tm:"])) == [
        "tm:received_replies", "tm:local_replies", "tm:UAS_transactions",
        "tm:UAC_transactions", "tm:2xx_transactions", "tm:3xx_transactions",
        "tm:4xx_transactions", "tm:5xx_transactions", "tm:6xx_transactions",
        "tm:inuse_transactions"]
    # a bare name answers under its group:name, as OpenSIPS' get_statistics
    assert stats.get(["rcv_requests"]) == {"core:rcv_requests": 4}
    assert stats.get(["core:rcv_requests", "inuse_transactions"]) == {
        "core:rcv_requests": 4, "tm:inuse_transactions": 5}
    # names and groups are case-insensitive (strncasecmp); each statistic once
    assert stats.get(["CORE:RCV_REQUESTS", "Rcv_Requests", "core:"])["core:rcv_requests"] == 4
    assert len(stats.get(["all", "core:", "tm:"])) == len(stats)


def test_bare_name_shared_by_two_groups_is_the_first_registered() -> None:
    stats, *_ = full_registry()
    assert stats.get(["active_sessions"]) == {"msrp:active_sessions": 7}
    assert stats.get(["msrp_gateway:active_sessions"]) == {"msrp_gateway:active_sessions": 3}


def test_unknown_names_are_skipped_and_none_known_is_statistics_not_found() -> None:
    stats, *_ = full_registry()
    assert stats.get(["nope", "core:rcv_replies", "nogroup:"]) == {"core:rcv_replies": 0}
    for names in (["nope"], ["nogroup:"], [], [":"], ["x" * 1000]):
        with pytest.raises(StatsNotFound) as e:
            stats.get(names)
        assert (e.value.code, e.value.message) == (404, "Statistics Not Found")


def test_reset_zeroes_counters_and_leaves_gauges() -> None:
    inuse = [9]
    stats, sip, msrp, gw = full_registry(inuse)
    sip.rcv_requests, sip.finals[2], msrp.sends_sent, gw.messages_to_msrp = 3, 2, 5, 1
    assert stats.reset(["all"]) == len(stats) - 3  # three gauges
    assert stats.get(["core:rcv_requests", "tm:2xx_transactions", "msrp:sends_sent",
                      "msrp_gateway:messages_to_msrp"]) == dict.fromkeys(
        ["core:rcv_requests", "tm:2xx_transactions", "msrp:sends_sent",
         "msrp_gateway:messages_to_msrp"], 0)
    assert stats.value("tm:inuse_transactions") == 9
    assert stats.value("msrp:active_sessions") == 7
    # the counters keep counting after a reset: the owners' records were zeroed in place
    sip.rcv_requests += 1
    assert stats.value("core:rcv_requests") == 1


def test_reset_of_one_name_touches_only_it() -> None:
    stats, sip, _, _ = full_registry()
    sip.rcv_requests = sip.rcv_replies = 2
    assert stats.reset(["rcv_requests"]) == 1
    assert (sip.rcv_requests, sip.rcv_replies) == (0, 2)
    assert stats.reset(["tm:inuse_transactions"]) == 0  # a gauge: found, not reset
    with pytest.raises(StatsNotFound):
        stats.reset(["unknown"])


def test_describe_says_which_are_incremental() -> None:
    stats, *_ = full_registry()
    kinds = stats.describe()
    assert kinds["core:rcv_requests"] == "incremental"
    assert kinds["tm:inuse_transactions"] == "non-incremental"
    assert kinds["msrp:active_sessions"] == "non-incremental"
    assert stats.describe(["msrp_gateway:"])["msrp_gateway:messages_failed"] == "incremental"


def test_registration_refuses_duplicates_bad_names_and_past_its_bound() -> None:
    stats = Statistics(max_statistics=2)
    rec = GatewayCounters()
    stats.add_counter("g", "sessions_created", rec)
    with pytest.raises(ValueError, match="twice"):
        stats.add_counter("G", "SESSIONS_CREATED", rec, "sessions_created")
    for group, name in (("g", "a:b"), ("", "x"), ("g", "with space"), ("g", "y" * 200)):
        with pytest.raises(ValueError):
            stats.add_gauge(group, name, lambda: 0)
    with pytest.raises(AttributeError):
        stats.add_counter("g", "no_such_attribute", rec)
    stats.add(Stat("g", "two", lambda: 2))
    with pytest.raises(ValueError, match="max_statistics"):
        stats.add_gauge("g", "three", lambda: 3)


# ---- the SIP stack ---------------------------------------------------------------------------

PEER = FakePeer("udp", "192.0.2.7", 5062)


def sip_request(method: str, *, branch: str = "z9hG4bKs1", call_id: str = "c1@peer",
                to_tag: str | None = None, body: bytes = b"") -> bytes:
    to = "<sip:gw@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:gw@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5062;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@192.0.2.7>;tag=pt1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        + ("Content-Type: text/plain\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class SIPEnv:
    def __init__(self, answer: int | None = 200) -> None:
        self.clock = task.Clock()
        self.transport = FakeSIPTransport("127.0.0.1", 5060)
        self.routed: list[Any] = []

        def router(txn: Any) -> None:
            self.routed.append(txn)
            if answer is not None:
                txn.respond(answer)

        self.stack = SIPStack(self.clock, self.transport, local_uri_host="127.0.0.1:5060",
                              router=router)
        self.stats = Statistics()
        register_sip(self.stats, self.stack.stats, inuse=lambda: self.stack.transaction_count)

    def deliver(self, data: Any) -> None:
        self.transport.deliver(data, PEER)

    def values(self, *names: str) -> list[int]:
        return [self.stats.value(n) for n in names]


def test_message_answered_by_the_router_counts_request_transaction_and_local_reply() -> None:
    env = SIPEnv(answer=202)
    env.deliver(sip_request("MESSAGE", body=b"hi"))
    assert env.values("core:rcv_requests", "tm:UAS_transactions", "tm:local_replies",
                      "tm:2xx_transactions", "core:drop_requests") == [1, 1, 1, 1, 0]
    # a retransmission is a received request but neither a new transaction nor a new reply
    env.deliver(sip_request("MESSAGE", body=b"hi"))
    assert env.values("core:rcv_requests", "tm:UAS_transactions", "tm:local_replies",
                      "tm:2xx_transactions") == [2, 1, 1, 1]
    assert [m.status for m in env.transport.take()] == [202, 202]


def test_final_classes_follow_the_status_we_answer() -> None:
    env = SIPEnv(answer=None)
    for i, code in enumerate((404, 486, 503, 603, 302), 1):
        env.deliver(sip_request("MESSAGE", branch=f"z9hG4bKc{i}", call_id=f"c{i}", body=b"x"))
        env.routed[-1].respond(code)
    assert env.values("tm:3xx_transactions", "tm:4xx_transactions", "tm:5xx_transactions",
                      "tm:6xx_transactions", "tm:2xx_transactions",
                      "tm:local_replies") == [1, 2, 1, 1, 0, 5]


def test_invite_accepted_as_the_ua_does_counts_one_local_2xx() -> None:
    env = SIPEnv(answer=None)
    env.deliver(sip_request("INVITE", body=b"v=0\r\n"))
    env.stack.accept(env.routed[0], body=b"v=0\r\n", content_type="application/sdp")
    env.routed[0].respond(486)  # after the final response: ignored, not counted
    env.deliver(sip_request("INVITE", branch="z9hG4bKi2", call_id="c2", body=b"v=0\r\n"))
    env.routed[1].respond(200, body=b"v=0\r\n", content_type="application/sdp")
    assert env.values("tm:UAS_transactions", "tm:local_replies", "tm:2xx_transactions",
                      "tm:4xx_transactions") == [2, 2, 2, 0]
    env.stack.stop()


def test_inuse_transactions_reads_the_live_table() -> None:
    env = SIPEnv(answer=None)
    env.deliver(sip_request("MESSAGE", body=b"x"))
    assert env.stats.value("tm:inuse_transactions") == 1
    env.routed[0].respond(200)  # a non-INVITE answered over UDP leaves for Timer J's record
    assert env.stats.value("tm:inuse_transactions") == 0
    env.stats.reset(["all"])
    assert env.stats.value("tm:UAS_transactions") == 0


def test_our_request_counts_uac_transaction_received_reply_and_its_class() -> None:
    env = SIPEnv()
    req = env.stack.new_request("MESSAGE", "sip:gw@127.0.0.1", "sip:bob@192.0.2.7",
                                "sip:bob@192.0.2.7:5062", body=b"hi", content_type="text/plain")
    results: list[Any] = []
    env.stack.send_request(req).addBoth(results.append)
    [sent] = env.transport.take()
    assert env.values("tm:UAC_transactions", "tm:inuse_transactions") == [1, 1]
    env.deliver(make_response(sent, 100))
    env.deliver(make_response(sent, 404, to_tag="x1"))
    env.deliver(make_response(sent, 404, to_tag="x1"))  # retransmitted final
    assert [r.status for r in results] == [404]
    assert env.values("core:rcv_replies", "tm:received_replies", "tm:4xx_transactions",
                      "core:drop_replies") == [3, 3, 1, 0]


def test_stray_reply_and_ack_for_nothing_are_counted_as_dropped() -> None:
    env = SIPEnv()
    stray = SIPResponse(200, "OK", Headers([
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnothing"),
        ("From", "<sip:gw@127.0.0.1>;tag=a"), ("To", "<sip:b@192.0.2.7>;tag=b"),
        ("Call-ID", "stray"), ("CSeq", "1 MESSAGE")]))
    env.deliver(stray)
    env.deliver(sip_request("ACK", to_tag="nodialog", branch="z9hG4bKack"))
    assert env.values("core:rcv_replies", "core:drop_replies", "core:rcv_requests",
                      "core:drop_requests", "tm:UAS_transactions") == [1, 1, 1, 1, 0]


def test_request_whose_header_breaks_when_read_counts_as_err_request() -> None:
    env = SIPEnv()
    headers = Headers([("Via", "this is not a via"), ("From", "<sip:a@h>;tag=1"),
                       ("To", "<sip:gw@127.0.0.1>"), ("Call-ID", "bad"), ("CSeq", "1 MESSAGE"),
                       ("Max-Forwards", "70")])
    env.deliver(SIPRequest("MESSAGE", "sip:gw@127.0.0.1", headers, b""))
    assert env.values("core:rcv_requests", "core:err_requests",
                      "tm:UAS_transactions") == [1, 1, 0]
    assert env.routed == []


# ---- MSRP sessions -------------------------------------------------------------------------

MSRP_PEER = fakes.PEER


class Host(fakes.Host):
    """The shared sans-IO session host with one link written to `frames`; every session
    is bound to it."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = fakes.Wire(self)
        self.link = self.wire.core

    @property
    def frames(self) -> list[Any]:
        return self.wire.frames

    def session(self) -> MSRPSession:  # type: ignore[override]
        s = super().session()
        s.bind(self.wire.core)
        return s


def incoming_send(session: MSRPSession, body: bytes, *, success: str = "no",
                  tid: str = "in0001") -> bytes:
    return MSRPRequest(tid, "SEND", [
        ("To-Path", session.local_uri), ("From-Path", MSRP_PEER),
        ("Message-ID", "m-" + tid), ("Byte-Range", f"1-{len(body)}/{len(body)}"),
        ("Success-Report", success), ("Content-Type", "text/plain")], body).to_bytes()


def test_msrp_sessions_count_sends_received_sent_and_reports() -> None:
    host = Host()
    stats = Statistics()
    register_msrp(stats, host.msrp_stats, active=lambda: len(host.table))
    sess = host.session()
    got: list[Any] = []
    sess.on_message = got.append
    host.link.data_received(incoming_send(sess, b"hello", success="yes"))
    assert stats.get(["msrp:"]) == {"msrp:active_sessions": 1, "msrp:sends_received": 1,
                                    "msrp:sends_sent": 0, "msrp:reports_sent": 1,
                                    "msrp:failure_reports_sent": 0}
    assert got[0].report_failure(486, "busy")  # the owner's failure REPORT
    assert stats.value("msrp:failure_reports_sent") == 1
    assert stats.value("msrp:reports_sent") == 2
    sess.send("text/plain", b"out")
    assert stats.value("msrp:sends_sent") == 1
    reports = [f for f in host.frames if isinstance(f, MSRPRequest) and f.method == "REPORT"]
    assert [r.status.code for r in reports] == [200, 486]
    assert any(isinstance(f, MSRPResponse) and f.status == 200 for f in host.frames)
    sess.close()
    assert stats.value("msrp:active_sessions") == 0


def test_each_host_has_its_own_msrp_counters() -> None:
    a, b = Host(), Host()
    a.session().send("text/plain", b"x")
    assert (a.msrp_stats.sends_sent, b.msrp_stats.sends_sent) == (1, 0)
    assert a.msrp_stats is a.msrp_stats


# ---- the gateway ---------------------------------------------------------------------------

ALICE, BOB = "sip:alice@example.net", "sip:bob@example.com"
KEY = f"{BOB}-{ALICE}"


def gw_request(method: str = "MESSAGE", body: bytes = b"hello", cseq: int = 1) -> RequestView:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}{method}")
    h.add("From", f"<{ALICE}>;tag=a1")
    h.add("To", f"<{BOB}>")
    h.add("Call-ID", f"call-{cseq}")
    h.add("CSeq", f"{cseq} {method}")
    h.add("Content-Type", "text/plain")
    txn = FakeServerTransaction(SIPRequest(method, BOB, h, body),
                                FakePeer("udp", "127.0.0.1", 5070))
    return RequestView(txn, [ipaddress.ip_network("127.0.0.0/8")])


class GWEnv:
    def __init__(self) -> None:
        self.clock = task.Clock()
        self.ua = FakeUA()
        self.sip = FakeSIPSender()
        self.gw = Gateway(self.clock, self.ua, self.sip, GatewaySettings(), lambda n, p: None)
        self.stats = Statistics()
        register_gateway(self.stats, self.gw.stats, active=lambda: len(self.gw.registry))

    def values(self) -> dict[str, int]:
        return {k.split(":")[1]: v for k, v in self.stats.get(["msrp_gateway:"]).items()}


def test_gateway_counts_sessions_and_messages_to_msrp_and_failed_setup() -> None:
    env = GWEnv()
    assert env.gw.msg_to_msrp(gw_request(cseq=1), KEY, "text/plain") == OK
    assert env.gw.msg_to_msrp(gw_request(cseq=2), KEY, "text/plain") == OK
    assert env.values() == {"active_sessions": 1, "sessions_created": 1,
                            "sessions_setup_failed": 0, "messages_to_msrp": 2,
                            "messages_to_sip": 0, "messages_failed": 0}
    env.ua.fail(env.ua.last().session_id, 486, "Busy Here")
    v = env.values()
    assert (v["active_sessions"], v["sessions_setup_failed"], v["messages_failed"]) == (0, 1, 2)


def test_gateway_counts_a_failed_send_after_the_session_is_up() -> None:
    env = GWEnv()
    env.gw.msg_to_msrp(gw_request(cseq=1), KEY, "text/plain")
    env.ua.establish(env.ua.last().session_id)
    env.ua.sent[0][3].callback(200)
    env.gw.msg_to_msrp(gw_request(cseq=2), KEY, "text/plain")
    from msrp_gateway.testing import FakeSendError
    env.ua.sent[1][3].errback(FakeSendError(408, "timeout"))
    v = env.values()
    assert (v["messages_to_msrp"], v["messages_failed"]) == (2, 1)


def test_gateway_counts_sends_paged_as_messages_and_refused_messages() -> None:
    env = GWEnv()
    invite = gw_request("INVITE", body=b"")
    assert env.gw.msrp_gw_answer(invite, KEY, "text/plain", BOB, ALICE, ALICE) == OK
    sid = env.ua.last().session_id
    one, two = FakeIncomingMessage("text/plain", b"one"), FakeIncomingMessage("text/plain", b"two")
    env.ua.deliver(sid, one)
    env.ua.deliver(sid, two)
    env.ua.deliver(sid, FakeIncomingMessage("text/plain", b""))  # empty: not a message
    env.ua.deliver(sid, FakeIncomingMessage(None, b"untyped"))  # refused 415: failed
    env.sip.answer(0, 200)
    env.sip.answer(1, 404)
    v = env.values()
    assert (v["sessions_created"], v["messages_to_sip"], v["messages_failed"]) == (1, 2, 2)
    assert (one.reports, [code for code, _ in two.reports]) == ([], [400])
    env.ua.terminate(sid)
    assert env.values()["active_sessions"] == 0


def test_messages_the_transport_could_not_parse_count_as_errors_by_kind() -> None:
    env = SIPEnv()
    reply = SIPResponse(200, "OK", Headers([("CSeq", "1 MESSAGE")]))
    env.transport.on_malformed(SIPParseError("bad Via", message=reply))
    env.transport.on_malformed(SIPParseError("bad CSeq", message=SIPRequest(
        "MESSAGE", "sip:gw@127.0.0.1", Headers(), b"")))
    env.transport.on_malformed(SIPParseError("not SIP at all"))
    assert env.values("core:err_replies", "core:err_requests",
                      "core:rcv_requests", "core:rcv_replies") == [1, 2, 0, 0]
