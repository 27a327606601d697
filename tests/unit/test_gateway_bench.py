"""The gateway benchmark's end_to_end load (bench/gateway_bench.py, bench/run.py): its sipp
sender demands 200 (a 202 from a gateway left in hop mode fails the step), the sender's wait
for its answer is measured per Call-ID from sipp's message log, and the table says what the
sender got instead of 200 when a step fails. Pure: no process is started."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from bench import gateway_bench as gb
from bench import run


def _expected_answers(scenario: str) -> list[str]:
    return [e.get("response", "") for e in ET.fromstring(scenario.encode("iso-8859-1"))
            if e.tag == "recv"]


def test_end_to_end_sender_demands_200_and_hop_sender_202() -> None:
    assert _expected_answers(gb.sender_scenario("end_to_end")) == ["200"]
    assert _expected_answers(gb.sender_scenario("hop")) == ["202"]
    # the same MESSAGE goes out in both modes: only the answer it waits for differs
    sends = [ET.fromstring(gb.sender_scenario(m).encode("iso-8859-1")).find("send").text
             for m in ("hop", "end_to_end")]
    assert sends[0] == sends[1] and "MESSAGE sip:[to_user]" in sends[0]


def test_unknown_delivery_mode_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="hop-by-hop"):
        gb.sender_scenario("hop-by-hop")
    with pytest.raises(ValueError):
        gb.page_to_session(1, [50], delivery="e2e")


def _msg(call_id: str) -> str:
    return (f"MESSAGE sip:bob@127.0.0.1:5060 SIP/2.0\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 MESSAGE\r\nContent-Length: 3\r\n\r\nhi\n")


def _resp(status: str, call_id: str) -> str:
    return f"SIP/2.0 {status} Whatever\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\n\r\n"


def test_answer_wait_runs_from_first_sending_to_first_final_answer() -> None:
    entries = [
        (10.000, "sent", _msg("a")),
        (10.100, "received", _resp("100", "a")),   # provisional: not the answer
        (10.500, "sent", _msg("a")),               # retransmission: the wait still runs from 10.0
        (10.600, "received", _resp("200", "a")),
        (10.650, "received", _resp("200", "a")),   # answer to the retransmission: counted once
        (11.000, "sent", _msg("b")),
        (11.004, "received", _resp("504", "b")),
        (12.000, "sent", _msg("c")),               # never answered
    ]
    waits, answers = gb.answer_latencies(entries)
    assert sorted(round(w, 3) for w in waits) == [0.004, 0.6]
    assert answers == {"200": 1, "504": 1}


def test_run_offers_the_end_to_end_load_next_to_the_existing_ones(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(gb, "page_to_session",
                        lambda sessions, rates, **kw: calls.append((sessions, rates, kw)) or {})
    todo = run.benchmarks(quick=True)
    assert {"page_to_session_1", "page_to_session_100", "session_to_page_1",
            "session_to_page_100", "setup_rate", "memory_10k_idle",
            "page_to_session_1_e2e"} <= set(todo)
    todo["page_to_session_1_e2e"]()
    todo["page_to_session_1"]()
    assert calls == [(1, run.QUICK, {"delivery": "end_to_end"}), (1, run.QUICK, {})]


def _step(rate: int, ok: bool, **extra: object) -> dict[str, object]:
    return {"rate": rate, "messages": rate * 3, "delivered": rate * 3 if ok else rate,
            "retransmissions": 0 if ok else 4, "ok": ok, "p50_ms": 0.4, "p99_ms": 2.5,
            "gateway_cpu_seconds": 0.3, "peer_cpu_seconds": 0.2, "sipp_cpu_seconds": 0.1,
            **extra}


def test_table_shows_the_senders_wait_and_what_came_instead_of_200() -> None:
    best = _step(200, True, answers={"200": 600}, answer_p50_ms=0.7, answer_p99_ms=1.8)
    failed = _step(800, False, answers={"200": 2390, "504": 3, "503": 2}, answer_p99_ms=29.6,
                   answer_max_ms=612.0)
    hop_best, hop_failed = _step(200, True), _step(800, False)
    text = run.table({
        "page_to_session_1_e2e": {"best": best, "steps": [best, failed],
                                  "gateway_peak_rss_kib": 64 * 1024},
        "page_to_session_1": {"best": hop_best, "steps": [hop_best, hop_failed],
                              "gateway_peak_rss_kib": 64 * 1024},
    })
    e2e_row, hop_row = text.splitlines()[2:4]
    assert e2e_row.startswith("page_to_session_1_e2e") and " 200 " in e2e_row
    assert "sender's 200 after p50/p99 0.7/1.8 ms" in e2e_row
    assert "answers other than 200: {'504': 3, '503': 2}, unanswered 5" in e2e_row
    assert "failed at 800/s: delivered 800/2400" in e2e_row
    assert "sender's wait p99/max 29.6/612.0 ms" in e2e_row
    # the hop row says nothing about answers: it has no such measurement
    assert "answers" not in hop_row and "sender's" not in hop_row
    assert "failed at 800/s: delivered 800/2400, retrans 4" in hop_row


def test_run_others_lists_the_layer_benchmarks_not_their_helper_modules():
    from bench import run

    names = [os.path.basename(p) for p in run.other_scripts()]
    assert "sip_message_rate.py" in names and "msrp_parser.py" in names
    assert "ports.py" not in names and "gateway_harness.py" not in names
