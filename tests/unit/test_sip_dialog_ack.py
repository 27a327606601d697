"""The ACK that confirms a UAS dialog keeps its body (RFC 3261 s.13.2.1, s.13.3.1.4).

After a 2xx that carried an offer (an INVITE without SDP: a late offer, RFC 3264 s.4) the
ACK carries the answer. The dialog keeps that ACK's body and Content-Type
(`Dialog.ack_body`, `.ack_content_type`) before `confirmed` fires, and an application/sdp
body becomes `remote_sdp`; a retransmitted ACK or one for another CSeq changes nothing.
Driven through the real SIP stack on an in-memory transport and a task.Clock.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from msrp_gateway.sip.dialog import Dialog
from tests.unit.test_sip_dialog import SDP, Env, accept_router, req_bytes, statuses

OFFER = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
ANSWER = b"v=0\r\no=- 3 3 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"


def late_offer_dialog(env: Env, invite_body: bytes = b"") -> Dialog:
    """A UAS dialog whose 200 carries OFFER (the INVITE had `invite_body`, b"": none)."""
    dialogs: list[Dialog] = []
    env.stack.router = lambda txn: dialogs.append(
        env.stack.accept(txn, body=OFFER, content_type="application/sdp"))
    ctype = "application/sdp" if invite_body else None
    env.deliver(req_bytes("INVITE", body=invite_body, ctype=ctype))
    (dialog,) = dialogs
    return dialog


def ack(env: Env, dialog: Dialog, body: bytes = b"", ctype: str | None = None, *,
        cseq: int = 1, branch: str = "z9hG4bKack1") -> None:
    env.deliver(req_bytes("ACK", branch=branch, to_tag=dialog.local_tag, cseq=cseq,
                          cseq_method="ACK", body=body, ctype=ctype))


def seen_when_confirmed(dialog: Dialog) -> list[tuple[bytes, str | None, bytes]]:
    """What a `confirmed` callback sees of the ACK: (ack_body, ack_content_type, remote_sdp)."""
    seen: list[tuple[bytes, str | None, bytes]] = []
    dialog.confirmed.addCallback(
        lambda d: seen.append((d.ack_body, d.ack_content_type, d.remote_sdp)))
    return seen


def test_late_offer_answer_in_the_ack_is_kept_before_confirmed_fires():
    env = Env()
    dialog = late_offer_dialog(env)
    assert dialog.remote_sdp == b"" and dialog.ack_body == b""
    seen = seen_when_confirmed(dialog)
    ack(env, dialog, ANSWER, "application/sdp")
    assert seen == [(ANSWER, "application/sdp", ANSWER)]
    assert dialog.local_sdp == OFFER


def test_sdp_content_type_is_matched_without_case_or_parameters():
    env = Env()
    dialog = late_offer_dialog(env)
    ack(env, dialog, ANSWER, "Application/SDP; charset=utf-8")
    assert dialog.remote_sdp == ANSWER
    assert dialog.ack_content_type == "Application/SDP; charset=utf-8"


def test_a_non_sdp_ack_body_is_kept_but_is_not_the_remote_sdp():
    env = Env()
    dialog = late_offer_dialog(env)
    seen = seen_when_confirmed(dialog)
    ack(env, dialog, b"hello", "text/plain")
    assert seen == [(b"hello", "text/plain", b"")]


def test_a_bodiless_ack_to_a_late_offer_leaves_no_answer():
    env = Env()
    dialog = late_offer_dialog(env)
    seen = seen_when_confirmed(dialog)
    ack(env, dialog)
    assert seen == [(b"", None, b"")]


def test_a_bodiless_ack_keeps_the_invites_sdp_as_remote_sdp():
    """Offer in the INVITE, answer in our 200: the ACK has nothing to add (s.13.2.1)."""
    env = Env()
    dialog = late_offer_dialog(env, invite_body=SDP)
    ack(env, dialog)
    assert dialog.confirmed.called and dialog.remote_sdp == SDP and dialog.ack_body == b""


def test_a_retransmitted_ack_changes_nothing():
    env = Env()
    dialog = late_offer_dialog(env)
    ack(env, dialog, ANSWER, "application/sdp")
    ack(env, dialog, b"other", "text/plain")  # the same ACK again, altered on the way
    ack(env, dialog)
    assert (dialog.ack_body, dialog.ack_content_type, dialog.remote_sdp) == (
        ANSWER, "application/sdp", ANSWER)


def test_an_ack_for_another_cseq_neither_confirms_nor_is_kept():
    env = Env()
    dialog = late_offer_dialog(env)
    ack(env, dialog, ANSWER, "application/sdp", cseq=7)
    assert not dialog.confirmed.called
    assert dialog.ack_body == b"" and dialog.remote_sdp == b""
    ack(env, dialog, ANSWER, "application/sdp")
    assert dialog.confirmed.called and dialog.remote_sdp == ANSWER


def test_a_bye_before_the_ack_confirms_with_no_ack_body_and_a_late_ack_is_ignored():
    env = Env()
    dialog = late_offer_dialog(env)
    seen = seen_when_confirmed(dialog)
    env.transport.take()
    env.deliver(req_bytes("BYE", branch="z9hG4bKbye", to_tag=dialog.local_tag, cseq=2))
    assert statuses(env.transport.take()) == [200] and dialog.terminated
    ack(env, dialog, ANSWER, "application/sdp")
    assert seen == [(b"", None, b"")] and dialog.ack_body == b""


def test_the_ack_of_a_reinvite_with_an_offer_in_our_2xx_updates_remote_sdp():
    """A bodiless re-INVITE gets our last SDP as an offer; its ACK answers (s.14.2)."""
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (dialog,) = dialogs
    ack(env, dialog)
    env.deliver(req_bytes("INVITE", branch="z9hG4bKre", to_tag=dialog.local_tag, cseq=2))
    assert statuses(env.transport.take())[-1] == 200
    ack(env, dialog, ANSWER, "application/sdp", cseq=2, branch="z9hG4bKack2")
    assert dialog.remote_sdp == ANSWER and dialog.ack_body == ANSWER


ACKS = st.lists(st.tuples(st.sampled_from([1, 2]),
                          st.sampled_from([b"", ANSWER, b"junk"]),
                          st.sampled_from([None, "application/sdp", "text/plain"])),
                min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(acks=ACKS)
def test_only_the_first_ack_of_our_2xxs_cseq_is_kept_whatever_comes_around_it(acks):
    env = Env()
    dialog = late_offer_dialog(env)
    for n, (cseq, body, ctype) in enumerate(acks):
        ack(env, dialog, body, ctype if body else None, cseq=cseq, branch=f"z9hG4bKa{n}")
    first = next(((b, c if b else None) for s, b, c in acks if s == 1), None)
    if first is None:
        assert not dialog.confirmed.called and dialog.ack_body == b""
        assert dialog.remote_sdp == b""
    else:
        body, ctype = first
        assert dialog.confirmed.called
        assert (dialog.ack_body, dialog.ack_content_type) == (body, ctype)
        assert dialog.remote_sdp == (body if ctype == "application/sdp" else b"")
    env.stack.stop()
