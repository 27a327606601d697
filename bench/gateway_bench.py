"""Gateway benchmarks, run as users deploy it: one `twistd -n msrpgw` process on loopback,
sipp on the page-mode side, tests/interop/msrp_peer.py on the MSRP side.

Each load benchmark climbs a ladder of rates; a step passes when every message arrived
(zero loss) and sipp saw zero retransmissions. The result is the highest passing rate with
its p50/p99 end-to-end latency (sender's send time to the receiver's receipt, read from the
sipp message log and the peer's timestamps) and the gateway's CPU seconds and peak RSS.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.gateway_harness import (
    HOST,
    SIPP_MESSAGE_UAS,
    GatewayProcess,
    PeerProcess,
    SippProcess,
    body_of,
    cpu_seconds_of,
    percentile,
    tempdir,
    wait_for,
    write_scenario,
)

STEP_SECONDS = 3.0
SAMPLE_EVERY = 7  # latency probes: every 7th message (prime, so no user is always skipped)
MAX_SECONDS_PER_BENCH = 240.0

UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="msrpgw bench MESSAGE sender">
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:[to_user]@127.0.0.1:[to_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0][from_suffix]@127.0.0.1:5999>;tag=[pid]-[call_number]
      To: <sip:[to_user]@127.0.0.1:[to_port]>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      [tag] [call_number]
    ]]>
  </send>
  <recv response="202" />
</scenario>
"""

# `[msrp_gateway] delivery = "end_to_end"`: the sender must get 200 (sent after the MSRP
# peer's 200 to the SEND), never 202; any other answer fails the call and so the step.
UAC_E2E = UAC.replace('<recv response="202" />', '<recv response="200" />')

END_TO_END = "end_to_end"

# The page-mode phone: answers every MESSAGE 200 (the harness's receiver, status filled in).
UAS = SIPP_MESSAGE_UAS.replace("[status] OK", "200 OK")


def sender_scenario(delivery: str = "hop") -> str:
    """The MESSAGE sender's scenario for a `[msrp_gateway] delivery` mode: it fails any
    call not answered with that mode's final answer (hop: 202, end_to_end: 200)."""
    if delivery == END_TO_END:
        return UAC_E2E
    if delivery == "hop":
        return UAC
    raise ValueError(f"unknown delivery mode {delivery!r}")


def answer_latencies(entries: list[tuple[float, str, str]]
                     ) -> tuple[list[float], dict[str, int]]:
    """From a sipp sender's message log (`SippProcess.log_entries()`): seconds from each
    MESSAGE's first sending to its final answer (what the page-mode sender waits), and how
    many final answers of each status came (a retransmission's repeated answer counted
    once per Call-ID)."""
    sent: dict[str, float] = {}
    answered: dict[str, tuple[float, str]] = {}
    for t, direction, raw in entries:
        call_id = _hdr(raw, "Call-ID")
        if call_id is None:
            continue
        if direction == "sent" and raw.startswith("MESSAGE "):
            sent.setdefault(call_id, t)
        elif direction == "received" and raw.startswith("SIP/2.0 "):
            status = raw[8:11]
            if status[:1] != "1" and call_id not in answered:
                answered[call_id] = (t, status)
    lat = [answered[c][0] - sent[c] for c in answered if c in sent]
    counts: dict[str, int] = {}
    for _, status in answered.values():
        counts[status] = counts.get(status, 0) + 1
    return lat, dict(sorted(counts.items()))


class Setup:
    """A fresh gateway and peer in their own directory."""

    def __init__(self, name: str, *, cprofile: bool = False,
                 **gateway_sections: dict[str, Any]) -> None:
        self.dir = tempdir(f"msrpgw-bench-{name}-")
        sections = {"log": {"level": "warn"}}
        sections.update(gateway_sections)
        self.delivery = str(sections.get("msrp_gateway", {}).get("delivery", "hop"))
        uac = sender_scenario(self.delivery)  # the sipp sender expects this mode's answer
        self.cprofile = os.path.join(self.dir, "gateway.cprofile") if cprofile else ""
        self.gw = GatewayProcess(self.dir, **sections).start(cprofile=self.cprofile)
        self.peer = PeerProcess(self.dir, proxy=f"sip:{HOST}:{self.gw.sip_port};lr")
        self.uac = write_scenario(self.dir, "bench_uac.xml", uac)
        # every call its own From user, so every MESSAGE is a new key and a new session
        self.uac_new = write_scenario(self.dir, "bench_uac_new.xml", uac.replace(
            "[field0][from_suffix]@", "[field0][from_suffix]x[call_number]@"))
        self.uas = write_scenario(self.dir, "bench_uas.xml", UAS)

    def users_file(self, n: int, prefix: str) -> str:
        path = os.path.join(self.dir, f"users-{prefix}-{n}.csv")
        with open(path, "w") as f:
            f.write("SEQUENTIAL\n")
            f.writelines(f"{prefix}{i}\n" for i in range(n))
        return path

    def sipp_uac(self, users: str, count: int, rate: float, tag: str, *, suffix: str = "",
                 trace: bool = True, new_keys: bool = False) -> SippProcess:
        scenario = self.uac_new if new_keys else self.uac
        return SippProcess(self.dir, scenario, f"{HOST}:{self.gw.sip_port}", "-inf", users,
                           "-m", str(count), "-r", str(int(rate)), "-l", str(max(50, int(rate))),
                           "-timeout", str(int(count / max(rate, 1) + 30)),
                           keys={"to_user": "bob", "to_port": self.peer.sip_port, "tag": tag,
                                 "from_suffix": suffix or ""},
                           name=f"uac-{tag}", trace_msg=trace)

    def quiet(self, sample: int = SAMPLE_EVERY) -> None:
        """The peer counts every message but prints only every sample-th (its JSON output
        would otherwise cost more than the gateway's work)."""
        self.peer.send(cmd="quiet", on=True, sample=sample)
        self.peer.expect("ok", cmd="quiet")

    def wait_delivered(self, before: int, count: int, timeout: float = 10.0) -> int:
        end = time.monotonic() + timeout
        while True:
            got = self.peer_stats()["messages"] - before
            if got >= count or time.monotonic() > end:
                return got
            time.sleep(0.2)

    def samples(self, tag: str) -> dict[str, float]:
        """Body -> receipt time of the sampled `message` events of this step."""
        out = {}
        for e in self.peer.drain("message"):
            body = (e.get("body") or "").strip()
            if body.startswith(tag + " "):
                out[body] = e["received"]
        return out

    def log_mark(self) -> int:
        return len(self.gw.log())

    def log_errors(self, mark: int) -> dict[str, Any]:
        """Error/warn lines the gateway wrote since `mark`: how many and the first (why a
        step lost messages: e.g. an MSRP send queue bound)."""
        lines = [ln for ln in self.gw.log()[mark:].splitlines()
                 if "#error]" in ln or "#warn]" in ln]
        first = lines[0].split("] ", 1)[-1][:160] if lines else None
        return {"gateway_log_errors": len(lines), "first_error": first}

    def peer_cpu(self) -> float:
        return cpu_seconds_of(self.peer.proc.pid)

    def peer_stats(self) -> dict[str, Any]:
        self.peer.send(cmd="stats")
        return self.peer.expect("stats", timeout=10)

    def close(self) -> dict[str, Any]:
        peak = self.gw.rss_kib(peak=True)
        cpu = self.gw.cpu_seconds()
        self.peer.close()
        self.gw.stop()
        return {"gateway_cpu_seconds_total": round(cpu, 2), "gateway_peak_rss_kib": peak}


def ladder(run_step: Any, rates: list[int]) -> dict[str, Any]:
    """Climb the rates; stop at the first failing step or when the time budget is spent."""
    best: dict[str, Any] | None = None
    steps = []
    began = time.monotonic()
    for rate in rates:
        result = run_step(rate)
        steps.append(result)
        if not result["ok"]:
            break
        best = result
        if time.monotonic() - began > MAX_SECONDS_PER_BENCH:
            break
    return {"best": best, "steps": steps}


# -- page -> session ------------------------------------------------------------------------


def page_to_session(sessions: int, rates: list[int], *, delivery: str = "hop"
                    ) -> dict[str, Any]:
    """With `delivery="end_to_end"` the gateway runs `[msrp_gateway] delivery =
    "end_to_end"`, every MESSAGE must get 200 (not 202), and each step also reports the
    sender's wait for it (`answer_p50_ms`/`answer_p99_ms`) and the answers by status."""
    e2e = delivery == END_TO_END
    sender_scenario(delivery)  # an unknown mode fails before anything starts
    if e2e:
        s = Setup(f"p2s{sessions}-e2e", msrp_gateway={"delivery": END_TO_END})
    else:
        s = Setup(f"p2s{sessions}")
    try:
        users = s.users_file(sessions, "u")
        warm = s.sipp_uac(users, sessions, min(200, sessions * 10), "warm")
        if warm.wait(60) != 0:
            raise RuntimeError(f"warm-up failed: {warm.errors()[-500:]}")
        wait_for(lambda: s.peer_stats()["sessions"] >= sessions, 30, "sessions established")
        s.quiet()

        def step(rate: int) -> dict[str, Any]:
            count = int(rate * STEP_SECONDS)
            tag = f"r{rate}"
            s.peer.drain("message")
            m0 = s.peer_stats()["messages"]
            mark = s.log_mark()
            cpu0, pcpu0 = s.gw.cpu_seconds(), s.peer_cpu()
            uac = s.sipp_uac(users, count, rate, tag)
            rc = uac.wait(STEP_SECONDS + 60)
            delivered = s.wait_delivered(m0, count)
            cpu = s.gw.cpu_seconds() - cpu0  # after the last SEND went out, not the last 202
            pcpu = s.peer_cpu() - pcpu0
            received = s.samples(tag)
            sent: dict[str, float] = {}
            for t, direction, raw in uac.log_entries():
                if direction == "sent" and raw.startswith("MESSAGE "):
                    sent.setdefault(body_of(raw).strip(), t)
            lat = [received[b] - sent[b] for b in received if b in sent]
            retrans = uac.counter("Retransmissions")
            ok = rc == 0 and retrans == 0 and delivered == count
            result = {"rate": rate, "messages": count, "delivered": delivered,
                      "sipp_exit": rc, "retransmissions": retrans, "ok": ok,
                      **s.log_errors(mark),
                      "latency_samples": len(lat), "peer_cpu_seconds": round(pcpu, 2),
                      "sipp_cpu_seconds": _round(uac.cpu_seconds),
                      "p50_ms": _ms(percentile(lat, 50)), "p99_ms": _ms(percentile(lat, 99)),
                      "gateway_cpu_seconds": round(cpu, 2)}
            if e2e:  # the sender's wait for its 200 includes the MSRP round trip
                waits, answers = answer_latencies(uac.log_entries())
                result.update({"answers": answers, "answer_samples": len(waits),
                               "answer_p50_ms": _ms(percentile(waits, 50)),
                               "answer_p99_ms": _ms(percentile(waits, 99)),
                               "answer_max_ms": _ms(max(waits, default=None))})
            return result

        out = ladder(step, rates)
    finally:
        out_close = s.close()
    out.update(out_close)
    return out


# -- session -> page ------------------------------------------------------------------------


def session_to_page(sessions: int, rates: list[int]) -> dict[str, Any]:
    s = Setup(f"s2p{sessions}")
    try:
        def step(rate: int) -> dict[str, Any]:
            count = int(rate * STEP_SECONDS)
            uas = SippProcess(s.dir, s.uas, "-m", str(count), "-timeout",
                              str(int(STEP_SECONDS + 60)), name=f"uas-r{rate}")
            time.sleep(0.3)
            sids = []
            for i in range(sessions):
                target = f"sip:phone{i}@127.0.0.1:{uas.port}"
                s.peer.send(cmd="invite", **{"from": f"sip:r{rate}s{i}@127.0.0.1",
                                             "to": target, "ruri": target})
                sids.append(s.peer.expect("started")["sid"])
            for sid in sids:
                s.peer.expect("established", timeout=30, sid=sid)
            mark = s.log_mark()
            cpu0, pcpu0 = s.gw.cpu_seconds(), s.peer_cpu()
            s.peer.send(cmd="send", sid="*", ctype="text/plain", body="m{i} t={t}",
                        count=count, rate=rate)
            done = s.peer.expect("burst_done", timeout=STEP_SECONDS + 60)
            try:
                rc = uas.wait(30)
            except Exception:  # noqa: BLE001 - a step that loses messages never ends by itself
                rc = -1
            cpu = s.gw.cpu_seconds() - cpu0
            pcpu = s.peer_cpu() - pcpu0
            got = [(t, raw) for t, d, raw in uas.log_entries()
                   if d == "received" and raw.startswith("MESSAGE ")]
            call_ids = {_hdr(raw, "Call-ID") for _, raw in got}
            lat = []
            for t, raw in got:
                body = body_of(raw)
                if " t=" in body:
                    lat.append(t - float(body.rsplit(" t=", 1)[1]))
            retrans = len(got) - len(call_ids)
            for sid in sids:
                s.peer.send(cmd="bye", sid=sid)
                s.peer.expect("ended", sid=sid)
            ok = rc == 0 and done["ok"] == count and len(call_ids) == count and retrans == 0
            return {"rate": rate, "messages": count, "delivered": len(call_ids),
                    "sends_ok": done["ok"], "sipp_exit": rc, "retransmissions": retrans,
                    **s.log_errors(mark),
                    "peer_cpu_seconds": round(pcpu, 2),
                    "sipp_cpu_seconds": _round(uas.cpu_seconds),
                    "ok": ok, "p50_ms": _ms(percentile(lat, 50)),
                    "p99_ms": _ms(percentile(lat, 99)), "gateway_cpu_seconds": round(cpu, 2)}

        out = ladder(step, rates)
    finally:
        out_close = s.close()
    out.update(out_close)
    return out


# -- set-up rate ----------------------------------------------------------------------------


def setup_rate(rates: list[int]) -> dict[str, Any]:
    s = Setup("setup")
    try:
        s.quiet()
        users = s.users_file(1, "new")

        def step(rate: int) -> dict[str, Any]:
            count = int(rate * STEP_SECONDS)
            tag = f"r{rate}"
            stats0 = s.peer_stats()
            before, m0 = stats0["sessions"], stats0["messages"]
            s.peer.drain("message")
            mark = s.log_mark()
            cpu0, pcpu0 = s.gw.cpu_seconds(), s.peer_cpu()
            uac = s.sipp_uac(users, count, rate, tag, suffix=tag, new_keys=True)
            rc = uac.wait(STEP_SECONDS + 60)
            delivered = s.wait_delivered(m0, count, 15)
            cpu = s.gw.cpu_seconds() - cpu0
            pcpu = s.peer_cpu() - pcpu0
            received = s.samples(tag)
            established = s.peer_stats()["sessions"] - before
            sent: dict[str, float] = {}
            for t, direction, raw in uac.log_entries():
                if direction == "sent" and raw.startswith("MESSAGE "):
                    sent.setdefault(body_of(raw).strip(), t)
            lat = [received[b] - sent[b] for b in received if b in sent]
            retrans = uac.counter("Retransmissions")
            ok = rc == 0 and retrans == 0 and delivered == count and established == count
            return {"rate": rate, "sessions": count, "established": established,
                    "delivered": delivered, "sipp_exit": rc, "retransmissions": retrans,
                    "peer_cpu_seconds": round(pcpu, 2), **s.log_errors(mark),
                    "sipp_cpu_seconds": _round(uac.cpu_seconds),
                    "ok": ok, "latency_samples": len(lat), "p50_ms": _ms(percentile(lat, 50)),
                    "p99_ms": _ms(percentile(lat, 99)), "gateway_cpu_seconds": round(cpu, 2)}

        out = ladder(step, rates)
    finally:
        out_close = s.close()
    out.update(out_close)
    return out


# -- memory ---------------------------------------------------------------------------------


def memory(sessions: int = 10_000, rate: int = 400) -> dict[str, Any]:
    s = Setup("memory")
    try:
        s.quiet(0)
        warm_users = s.users_file(1, "warm")
        warm = s.sipp_uac(warm_users, 50, 50, "warm", new_keys=True, trace=False)
        warm.wait(60)
        wait_for(lambda: s.peer_stats()["sessions"] >= 50, 30, "warm-up sessions")
        time.sleep(1.0)
        base = s.gw.rss_kib()
        users = s.users_file(1, "idle")
        began = time.monotonic()
        uac = s.sipp_uac(users, sessions, rate, "idle", new_keys=True, trace=False)
        rc = uac.wait(sessions / rate + 120)
        wait_for(lambda: s.peer_stats()["sessions"] >= sessions + 50, 120,
                 f"{sessions} sessions established")
        took = time.monotonic() - began
        time.sleep(2.0)
        rss = s.gw.rss_kib()
        listed = len(s.gw.mi("msrp_gw_list_sessions", timeout=60)["result"])
        out = {"sessions": sessions, "listed_by_mi": listed, "sipp_exit": rc,
               "rss_before_kib": base, "rss_after_kib": rss,
               "kib_per_session": round((rss - base) / sessions, 2),
               "setup_seconds": round(took, 1)}
    finally:
        out_close = s.close()
    out.update(out_close)
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _hdr(raw: str, name: str) -> str | None:
    for line in raw.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name.lower():
            return v.strip()
    return None
