"""The fake dialog of msrp_gateway.testing keeps the ACK as `sip.dialog.Dialog` does, so a
late-offer UA test over the fakes sees the answer where the real dialog puts it."""

from __future__ import annotations

from twisted.internet import task

from msrp_gateway.testing import FakeDialog, FakeInviteStack

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def dialog() -> FakeDialog:
    return FakeDialog(FakeInviteStack(task.Clock()), "uas", "call-1")


def test_an_sdp_ack_is_the_answer_before_confirmed_fires() -> None:
    d = dialog()
    seen = []
    d.confirmed.addCallback(lambda dl: seen.append((dl.ack_body, dl.ack_content_type,
                                                    dl.remote_sdp)))
    d.ack(SDP, "Application/SDP; charset=utf-8")
    assert seen == [(SDP, "Application/SDP; charset=utf-8", SDP)]


def test_a_non_sdp_ack_body_is_kept_but_not_taken_as_sdp() -> None:
    d = dialog()
    d.ack(b"hello", "text/plain")
    assert (d.ack_body, d.ack_content_type, d.remote_sdp) == (b"hello", "text/plain", b"")


def test_a_retransmitted_ack_changes_nothing() -> None:
    d = dialog()
    d.ack()
    d.ack(SDP, "application/sdp")
    assert (d.ack_body, d.remote_sdp) == (b"", b"")
