"""MI get_statistics / list_statistics / reset_statistics over the JSON-RPC resource (no
sockets): the params opensips-cli sends, OpenSIPS' answers and errors; and the statistics
a whole service (built on a MemoryReactorClock) registers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from msrp_gateway import config
from msrp_gateway.mi import MIResource
from msrp_gateway.mi_commands import build_table
from msrp_gateway.service import build_service
from msrp_gateway.stats import (
    GatewayCounters,
    MSRPStats,
    SIPCounters,
    Statistics,
    register_gateway,
    register_msrp,
    register_sip,
)


class Parts:
    def __init__(self) -> None:
        self.clock = Clock()
        self.stats = Statistics()
        self.sip, self.msrp, self.gw = SIPCounters(), MSRPStats(), GatewayCounters()
        self.inuse = 0
        register_sip(self.stats, self.sip, inuse=lambda: self.inuse)
        register_msrp(self.stats, self.msrp, active=lambda: 2)
        register_gateway(self.stats, self.gw, active=lambda: 1)
        self.resource = MIResource(build_table(clock=self.clock, stats=self.stats),
                                   clock=self.clock)

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            req["params"] = params
        out: list[Any] = []
        self.resource.handle_body(json.dumps(req).encode()).addBoth(out.append)
        assert out and out[0] is not None
        answer: dict[str, Any] = json.loads(out[0])
        return answer


@pytest.fixture
def p() -> Parts:
    return Parts()


def test_get_statistics_all_as_opensips_cli_sends_it(p: Parts) -> None:
    p.sip.rcv_requests, p.sip.finals[2], p.inuse = 3, 2, 4
    # `opensips-cli -x mi get_statistics all` -> positional [["all"]]
    answer = p.call("get_statistics", [["all"]])
    assert list(answer) == ["jsonrpc", "result", "id"]
    result = answer["result"]
    assert result["core:rcv_requests"] == 3
    assert result["tm:2xx_transactions"] == 2
    assert result["tm:inuse_transactions"] == 4
    assert result["msrp:active_sessions"] == 2
    assert result["msrp_gateway:active_sessions"] == 1
    assert all(isinstance(v, int) for v in result.values())


def test_get_statistics_by_group_and_name_named_params(p: Parts) -> None:
    p.msrp.sends_sent = 5
    result = p.call("get_statistics", {"statistics": ["msrp:", "rcv_replies"]})["result"]
    assert list(result) == ["msrp:active_sessions", "msrp:sends_received", "msrp:sends_sent",
                            "msrp:reports_sent", "msrp:failure_reports_sent",
                            "core:rcv_replies"]
    assert result["msrp:sends_sent"] == 5
    assert p.call("statistics:get", [["tm:local_replies"]])["result"] == {
        "tm:local_replies": 0}


def test_unknown_statistics_answer_404_statistics_not_found(p: Parts) -> None:
    for params in ([["nope"]], [["nogroup:"]], [[]]):
        assert p.call("get_statistics", params)["error"] == {
            "code": 404, "message": "Statistics Not Found"}
    # one known name among unknown ones is enough, as in OpenSIPS
    assert p.call("get_statistics", [["nope", "err_requests"]])["result"] == {
        "core:err_requests": 0}


def test_statistics_param_must_be_an_array_of_strings(p: Parts) -> None:
    for params in (["all"], [[1]], {"statistics": "all"}, [[["all"]]]):
        assert p.call("get_statistics", params)["error"] == {
            "code": -32602, "message": "Invalid params",
            "data": "Bad type for parameter 'statistics'"}
    assert p.call("get_statistics")["error"]["code"] == -32602  # required
    assert p.call("get_statistics", {"stats": ["all"]})["error"]["data"] == \
        "Named parameters do not match"


def test_list_statistics_says_incremental_or_not(p: Parts) -> None:
    everything = p.call("list_statistics")["result"]
    assert everything["core:rcv_requests"] == "incremental"
    assert everything["tm:inuse_transactions"] == "non-incremental"
    assert everything["msrp_gateway:active_sessions"] == "non-incremental"
    assert set(everything) == set(p.call("get_statistics", [["all"]])["result"])
    assert p.call("list_statistics", [["msrp_gateway:"]])["result"][
        "msrp_gateway:messages_failed"] == "incremental"
    assert p.call("list_statistics", [["nope"]])["error"]["code"] == 404


def test_reset_statistics_zeroes_counters_only(p: Parts) -> None:
    p.sip.rcv_requests = p.sip.uas_transactions = 7
    p.inuse = 3
    assert p.call("reset_statistics", [["rcv_requests"]])["result"] == "OK"
    assert (p.sip.rcv_requests, p.sip.uas_transactions) == (0, 7)
    assert p.call("reset_statistics", [["tm:", "inuse_transactions"]])["result"] == "OK"
    result = p.call("get_statistics", [["tm:"]])["result"]
    assert result["tm:UAS_transactions"] == 0
    assert result["tm:inuse_transactions"] == 3  # a gauge is never reset
    assert p.call("reset_statistics", [["nope"]])["error"] == {
        "code": 404, "message": "Statistics Not Found"}


def test_which_lists_the_statistics_commands_and_their_params(p: Parts) -> None:
    names = p.call("which")["result"]
    for name in ("get_statistics", "list_statistics", "reset_statistics", "statistics:get",
                 "statistics:list", "statistics:reset"):
        assert name in names
    assert p.call("which", ["list_statistics"])["result"] == [[], ["statistics"]]
    assert p.call("which", ["get_statistics"])["result"] == [["statistics"]]


def test_table_without_statistics_has_no_statistics_commands() -> None:
    clock = Clock()
    assert "get_statistics" not in build_table(clock=clock)


def test_the_service_registers_every_statistic_and_serves_them() -> None:
    reactor = MemoryReactorClock()
    svc = build_service(config.from_dict({}), reactor)
    values = svc.stats.get(["all"])
    assert values["tm:inuse_transactions"] == 0
    assert values["msrp:active_sessions"] == 0
    assert values["msrp_gateway:active_sessions"] == 0
    # the counters are the live ones of the stacks and the gateway
    assert svc.sip is not None and svc.gateway is not None and svc.msrp is not None
    svc.sip.stats.rcv_requests += 2
    svc.msrp.msrp_stats.sends_sent += 1
    svc.gateway.stats.messages_to_msrp += 4
    assert svc.stats.get(["core:rcv_requests", "msrp:sends_sent",
                          "msrp_gateway:messages_to_msrp"]) == {
        "core:rcv_requests": 2, "msrp:sends_sent": 1, "msrp_gateway:messages_to_msrp": 4}
