"""SDP for MSRP: what we write, line by line, and what we read from real clients."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msrp_gateway import sdp
from msrp_gateway.sdp import SDPError


def crlf(text: str) -> bytes:
    return "".join(line.strip() + "\r\n" for line in text.strip().splitlines()).encode()


# RFC 4975 s.10.1 / 10.2 style offer (alice) -- with a=setup absent, as in the RFC.
RFC4975_OFFER = crlf(
    """
    v=0
    o=alice 2890844557 2890844559 IN IP4 alice.example.com
    s= -
    c=IN IP4 alice.example.com
    t=0 0
    m=message 7654 TCP/MSRP *
    a=accept-types:text/plain
    a=path:msrp://alice.example.com:7654/jshA7weztas;tcp
    """
)

RFC4975_ANSWER = crlf(
    """
    v=0
    o=bob 2890844612 2890844616 IN IP4 bob.example.com
    s= -
    c=IN IP4 bob.example.com
    t=0 0
    m=message 8888 TCP/MSRP *
    a=accept-types:text/plain
    a=path:msrp://bob.example.com:8888/9di4eae923wzd;tcp
    """
)

# RFC 4975 s.8.1: wrapped types inside message/cpim, and max-size.
CPIM_OFFER = crlf(
    """
    v=0
    o=alice 2890844526 2890844527 IN IP4 alice.example.com
    s= -
    c=IN IP4 alice.example.com
    t=0 0
    m=message 7394 TCP/MSRP *
    a=accept-types:message/cpim text/plain text/html
    a=accept-wrapped-types:text/plain image/*
    a=max-size:131072
    a=path:msrp://alice.example.com:7394/2s93i93idj;tcp
    """
)

# RFC 4976 s.7 style: two relays in front of the client, over TLS, IPv6 connection line.
RELAY_TLS_V6_OFFER = crlf(
    """
    v=0
    o=alice 2890844526 2890844527 IN IP6 2001:db8::1
    s=-
    c=IN IP6 2001:db8::1
    t=0 0
    m=message 12763 TCP/TLS/MSRP *
    a=accept-types:text/plain message/cpim
    a=path:msrps://relay1.example.com:2855/aklsd;tcp msrps://relay2.example.net/93sdf;tcp msrps://[2001:db8::1]:12763/kjhd37s2s2;tcp
    a=setup:actpass
    """
)

# What a file-transfer-capable desktop client (Blink/SIP SIMPLE style) writes: audio first,
# then chat with extra attributes, ICE-like noise and a session-level a=setup.
MULTI_MEDIA_OFFER = crlf(
    """
    v=0
    o=- 3901539112 3901539112 IN IP4 192.0.2.10
    s=Blink 5.1.7 (Linux)
    c=IN IP4 192.0.2.10
    t=0 0
    a=setup:passive
    m=audio 50010 RTP/AVP 8 0 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=sendrecv
    m=message 2855 TCP/MSRP *
    a=path:msrp://192.0.2.10:2855/uk28fe9z;tcp
    a=accept-types:message/cpim text/* application/im-iscomposing+xml
    a=accept-wrapped-types:*
    a=chatroom:private-messages
    a=sendrecv
    m=video 0 RTP/AVP 96
    """
)

# An RCS-style offer (GSMA RCC.07): CPIM only, active side, NAT friendly.
RCS_OFFER = crlf(
    """
    v=0
    o=- 1234567 1234567 IN IP4 10.20.30.40
    s=-
    c=IN IP4 10.20.30.40
    t=0 0
    m=message 9 TCP/MSRP *
    a=accept-types:message/cpim application/im-iscomposing+xml
    a=accept-wrapped-types:text/plain message/imdn+xml
    a=setup:active
    a=path:msrp://10.20.30.40:9/s1xb2;tcp
    a=sendrecv
    """
)

OUR_PATH = ["msrp://127.0.0.1:2855/ourSessId;tcp"]


def test_offer_is_written_line_by_line_as_rfc4975_section8():
    body = sdp.build_offer(OUR_PATH, ["text/plain", "message/cpim"], sess_id=42, sess_version=43)
    assert body.endswith(b"\r\n")
    assert body.decode().split("\r\n")[:-1] == [
        "v=0",
        "o=- 42 43 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=message 2855 TCP/MSRP *",
        "a=accept-types:text/plain message/cpim",
        "a=path:msrp://127.0.0.1:2855/ourSessId;tcp",
        "a=setup:actpass",
    ]
    assert b"a=connection" not in body


def test_offer_over_tls_on_ipv6_uses_ip6_and_tls_proto():
    path = sdp.local_path("msrps://[::1]:2856;tcp", "abc")
    assert path == ["msrps://[::1]:2856/abc;tcp"]
    lines = sdp.build_offer(path, ["text/plain"], setup="active", sess_id=1).decode().split("\r\n")
    assert lines[1] == "o=- 1 1 IN IP6 ::1"
    assert lines[3] == "c=IN IP6 ::1"
    assert lines[5] == "m=message 2856 TCP/TLS/MSRP *"
    assert lines[8] == "a=setup:active"


def test_offer_with_relay_takes_address_from_our_own_uri_and_lists_relay_first():
    path = sdp.local_path("msrp://192.0.2.5:2855;tcp", "xyz", ["msrp://relay.example.net:2855/r1;tcp"])
    lines = sdp.build_offer(path, ["text/plain"], max_size=4096, accept_wrapped_types=["text/plain"], sess_id=7).decode().split("\r\n")
    assert lines[3] == "c=IN IP4 192.0.2.5"
    assert lines[5] == "m=message 2855 TCP/MSRP *"
    assert lines[7] == "a=accept-wrapped-types:text/plain"
    assert lines[8] == "a=max-size:4096"
    assert lines[9] == "a=path:msrp://relay.example.net:2855/r1;tcp msrp://192.0.2.5:2855/xyz;tcp"


def test_local_path_keeps_params_and_defaults_tcp():
    assert sdp.local_path("msrp://gw.example.com:2855;tcp", "s") == ["msrp://gw.example.com:2855/s;tcp"]
    assert sdp.local_path("msrp://gw.example.com", "s") == ["msrp://gw.example.com/s;tcp"]


def test_session_ids_are_unguessable_and_fresh():
    ids = {sdp.new_session_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) >= 16 and i.isascii() for i in ids)


def test_answer_to_rfc4975_offer_is_passive_and_matches_types():
    neg = sdp.build_answer(RFC4975_OFFER, OUR_PATH, ["text/plain"], sess_id=5)
    assert neg.peer.path == ["msrp://alice.example.com:7654/jshA7weztas;tcp"]
    assert neg.peer.setup is None
    assert neg.active is False  # no a=setup: the offerer connects (RFC 4975)
    assert neg.accept_types == ["text/plain"]
    assert neg.body.decode().split("\r\n")[:-1] == [
        "v=0",
        "o=- 5 5 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=message 2855 TCP/MSRP *",
        "a=accept-types:text/plain",
        "a=path:msrp://127.0.0.1:2855/ourSessId;tcp",
        "a=setup:passive",
    ]


def test_rfc4975_answer_is_read_and_offerer_connects():
    peer, common, active = sdp.read_answer(RFC4975_ANSWER, ["text/plain"])
    assert peer.path == ["msrp://bob.example.com:8888/9di4eae923wzd;tcp"]
    assert peer.address == "bob.example.com"
    assert peer.port == 8888
    assert common == ["text/plain"]
    assert active is True


def test_answer_saying_active_makes_the_offerer_wait():
    answer = RFC4975_ANSWER + b"a=setup:active\r\n"
    _, _, active = sdp.read_answer(answer, ["text/plain"])
    assert active is False


def test_cpim_offer_reads_wrapped_types_and_max_size():
    sd = sdp.parse_sdp(CPIM_OFFER)
    m = sdp.find_msrp_media(sd)
    assert m.accept_types == ["message/cpim", "text/plain", "text/html"]
    assert m.accept_wrapped_types == ["text/plain", "image/*"]
    assert m.max_size == 131072
    neg = sdp.build_answer(CPIM_OFFER, OUR_PATH, ["message/cpim", "text/plain"])
    assert neg.accept_types == ["message/cpim", "text/plain"]
    assert neg.accept_wrapped_types == ["text/plain"]
    assert "a=accept-wrapped-types:text/plain" in neg.body.decode().split("\r\n")


def test_relay_tls_ipv6_offer_keeps_every_hop_and_actpass_follows_config():
    sd = sdp.parse_sdp(RELAY_TLS_V6_OFFER)
    m = sdp.find_msrp_media(sd)
    assert m.tls and m.proto == "TCP/TLS/MSRP"
    assert m.address == "2001:db8::1"
    assert m.path == [
        "msrps://relay1.example.com:2855/aklsd;tcp",
        "msrps://relay2.example.net/93sdf;tcp",
        "msrps://[2001:db8::1]:12763/kjhd37s2s2;tcp",
    ]
    tls_path = ["msrps://127.0.0.1:2856/ours;tcp"]
    passive = sdp.build_answer(sd, tls_path, ["text/plain"])
    assert passive.active is False and "a=setup:passive" in passive.body.decode()
    active = sdp.build_answer(sd, tls_path, ["text/plain"], prefer_active=True)
    assert active.active is True and "a=setup:active" in active.body.decode()
    assert "m=message 2856 TCP/TLS/MSRP *" in active.body.decode()


def test_tls_offer_to_a_tcp_only_gateway_is_488():
    with pytest.raises(SDPError) as err:
        sdp.build_answer(RELAY_TLS_V6_OFFER, OUR_PATH, ["text/plain"])
    assert err.value.code == 488
    assert "TCP/TLS/MSRP" in err.value.reason


def test_multi_media_offer_rejects_others_with_port_zero_in_order():
    neg = sdp.build_answer(MULTI_MEDIA_OFFER, OUR_PATH, ["text/plain"])
    assert neg.peer.index == 1
    assert neg.peer.setup == "passive"  # from the session level
    assert neg.active is True
    assert neg.accept_types == ["text/plain"]  # text/* narrowed to ours
    m_lines = [l for l in neg.body.decode().split("\r\n") if l.startswith("m=")]
    assert m_lines == [
        "m=audio 0 RTP/AVP 8 0 101",
        "m=message 2855 TCP/MSRP *",
        "m=video 0 RTP/AVP 96",
    ]
    # the MSRP attributes belong to the message section, nothing follows the rejected video
    assert neg.body.decode().split("\r\n")[-2] == "m=video 0 RTP/AVP 96"
    assert b"a=connection" not in neg.body


def test_rcs_offer_active_side_and_cpim_types():
    neg = sdp.build_answer(RCS_OFFER, OUR_PATH, ["message/CPIM"])
    assert neg.active is False  # the RCS client is active: we never connect to it
    assert neg.accept_types == ["message/cpim"]
    assert neg.accept_wrapped_types == []
    with pytest.raises(SDPError) as err:
        sdp.build_answer(RCS_OFFER, OUR_PATH, ["text/plain"])
    assert err.value.code == 488
    assert err.value.warning().startswith('305 msrpgw "no common content type')


@pytest.mark.parametrize(
    "offered, ours, expected",
    [
        (["text/plain"], ["TEXT/PLAIN"], ["text/plain"]),
        (["*"], ["text/plain", "text/html"], ["text/plain", "text/html"]),
        (["text/*"], ["text/plain", "image/png"], ["text/plain"]),
        (["text/html", "text/plain"], ["text/*"], ["text/html", "text/plain"]),
        (["image/png"], ["*"], ["image/png"]),
        (["image/png"], ["text/plain"], []),
        (["text/plain", "text/plain"], ["text/plain"], ["text/plain"]),
    ],
)
def test_accept_types_intersection(offered, ours, expected):
    assert sdp.intersect_types(offered, ours) == expected


@pytest.mark.parametrize(
    "body, words",
    [
        (b"", "empty"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", "no MSRP media"),
        (RFC4975_OFFER.replace(b"m=message 7654", b"m=message 0"), "port 0"),
        (RFC4975_OFFER.replace(b"TCP/MSRP", b"UDP/MSRP"), "no MSRP media"),
        (RFC4975_OFFER.replace(b"a=path:", b"a=xpath:"), "a=path"),
        (RFC4975_OFFER.replace(b"a=accept-types:text/plain\r\n", b""), "accept-types"),
        (RFC4975_OFFER + b"a=setup:holdconn\r\n", "holdconn"),
        (RFC4975_OFFER + b"a=setup:sideways\r\n", "a=setup"),
        (RFC4975_OFFER.replace(b"msrp://alice", b"http://alice"), "MSRP URI"),
        (b"x" * (sdp.MAX_SDP_SIZE + 1), "too large"),
        (b"v=0\r\n" + b"a=x\r\n" * 300, "too many"),
        (b"\xff\xfe", "UTF-8"),
        (b"hello", "malformed"),
        (b"v=1\r\n", "v=0"),
    ],
)
def test_unusable_offers_are_488_with_a_reason(body, words):
    with pytest.raises(SDPError) as err:
        sdp.build_answer(body, OUR_PATH, ["text/plain"])
    assert err.value.code == 488
    assert words in err.value.reason
    assert err.value.warning().split(" ", 2)[0] in ("304", "305")


def test_answer_without_common_types_is_refused_by_the_offerer():
    with pytest.raises(SDPError) as err:
        sdp.read_answer(RFC4975_ANSWER.replace(b"text/plain", b"image/gif"), ["text/plain"])
    assert err.value.code == 488


def test_extra_attributes_and_lf_only_lines_are_tolerated():
    body = RFC4975_OFFER.replace(b"\r\n", b"\n") + b"a=sendrecv\na=x-foo:bar baz\nb=AS:64\n"
    neg = sdp.build_answer(body, OUR_PATH, ["text/plain"])
    assert neg.peer.path == ["msrp://alice.example.com:7654/jshA7weztas;tcp"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parser_raises_only_sdperror_on_junk(data):
    try:
        sd = sdp.parse_sdp(data)
        sdp.find_msrp_media(sd)
    except SDPError as exc:
        assert exc.code == 488


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["v=0", "m=message 1 TCP/MSRP *", "a=path:msrp://h:1/s;tcp", "a=accept-types:text/plain",
                         "a=setup:passive", "c=IN IP6 ::1", "m=audio 0 RTP/AVP 0", "a=max-size:99", "a=path:msrp://[x",
                         "o=- 1 1 IN IP4 h", "a=accept-types:*/x", "m=message 99999 TCP/MSRP *"]),
        max_size=20,
    )
)
def test_answerer_raises_only_sdperror_on_shuffled_lines(lines):
    body = ("\r\n".join(lines) + "\r\n").encode()
    try:
        neg = sdp.build_answer(body, OUR_PATH, ["text/plain"])
    except SDPError:
        return
    assert neg.body.startswith(b"v=0\r\n")


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-+.", min_size=1, max_size=12)
_mtype = st.builds(lambda a, b: f"{a}/{b}", _token, _token)


@settings(max_examples=200, deadline=None)
@given(
    host=st.sampled_from(["127.0.0.1", "::1", "2001:db8::7", "gw.example.com", "192.0.2.44"]),
    port=st.integers(1, 65535),
    tls=st.booleans(),
    relays=st.lists(st.builds(lambda h, p: f"msrp://{h}.example.net:{p}/r;tcp", _token, st.integers(1, 65535)),
                    max_size=3),
    types=st.lists(_mtype, min_size=1, max_size=5, unique=True),
    setup=st.sampled_from(["active", "passive", "actpass"]),
    max_size=st.none() | st.integers(0, 2**40),
)
def test_what_we_offer_reads_back_the_same(host, port, tls, relays, types, setup, max_size):
    scheme = "msrps" if tls else "msrp"
    hostpart = f"[{host}]" if ":" in host else host
    path = sdp.local_path(f"{scheme}://{hostpart}:{port};tcp", sdp.new_session_id(), relays)
    body = sdp.build_offer(path, types, setup=setup, max_size=max_size)
    m = sdp.find_msrp_media(sdp.parse_sdp(body))
    assert (m.path, m.accept_types, m.setup, m.max_size, m.port) == (path, types, setup, max_size, port)
    assert m.proto == ("TCP/TLS/MSRP" if tls else "TCP/MSRP")
    assert m.address == host
    assert b"a=connection" not in body


@pytest.mark.parametrize("proto, uri", [
    ("TCP/TLS/MSRP", "msrp://alice.example.com:7654/jshA7weztas;tcp"),
    ("TCP/MSRP", "msrps://alice.example.com:7654/jshA7weztas;tcp"),
])
def test_a_relayless_path_whose_scheme_contradicts_the_m_proto_is_488(proto, uri):
    offer = RFC4975_OFFER.replace(b"TCP/MSRP", proto.encode()).replace(
        b"msrp://alice.example.com:7654/jshA7weztas;tcp", uri.encode())
    with pytest.raises(SDPError) as refused:
        sdp.find_msrp_media(sdp.parse_sdp(offer))
    assert refused.value.code == 488 and refused.value.warning().startswith("304 ")
    assert "does not match the m= proto" in refused.value.reason


def test_the_split_modules_are_one_api():
    """sdp re-exports sdp_parse: one SDPError class, one parser, whichever path imports it."""
    from msrp_gateway import sdp_parse

    assert sdp.SDPError is sdp_parse.SDPError and sdp.parse_sdp is sdp_parse.parse_sdp
    assert set(sdp_parse.__all__) <= set(dir(sdp))
