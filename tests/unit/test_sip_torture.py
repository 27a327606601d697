"""RFC 4475 torture messages against the sans-IO SIP parser.

The messages are rebuilt here from RFC 4475 s.3 (bodies re-typed, Content-Length computed
where the RFC's value matched its body). Valid ones must parse to the right values; invalid
ones must raise SIPParseError with the status the RFC asks for (400, 505, 416); none may
raise anything else, over a datagram or a stream.
"""

from __future__ import annotations

import pytest

from msrp_gateway.sip.message import (
    SIPParseError,
    SIPRequest,
    SIPResponse,
    StreamParser,
    parse_message,
)
from msrp_gateway.sip.uri import parse_name_addr, parse_uri

SDP = (
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3\n"
    "s=-\n"
    "c=IN IP4 192.0.2.4\n"
    "t=0 0\n"
    "m=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\n"
    "a=rtpmap:31 LPC\n"
).replace("\n", "\r\n").encode()


def build(head: str, body: bytes = b"") -> bytes:
    """Header text with LF line ends -> wire bytes; ``{CL}`` becomes the body's length."""
    text = head.replace("{CL}", str(len(body)))
    return text.replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\n" + body


WSINV = build(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
    "TO :\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\n'
    "  ;\n"
    "  tag = 98asjd8\n"
    "MaX-fOrWaRdS: 0068\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\n"
    "Content-Length   : {CL}\n"
    "cseq: 0009\n"
    "  INVITE\n"
    "Via  : SIP  /   2.0\n"
    " /UDP\n"
    "    192.0.2.2;rport;branch=390skdjuw\n"
    "s :\n"
    "NewFangledHeader:   newfangled value\n"
    " continued newfangled value\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
    "Content-Type: application/sdp\n"
    "Route:\n"
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n"
    "  branch  =   z9hG4bK9ikj8  ,\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
    " z9hG4bK30239\n"
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\n'
    "      newvalue ;\n"
    "  secondparam ; q = 0.33",
    SDP,
)


def test_wsinv_short_tortuous_invite_parses_to_the_right_values():
    m = parse_message(WSINV)
    assert isinstance(m, SIPRequest)
    assert m.method == "INVITE"
    assert parse_uri(m.uri).params == {"unknownparam": None}
    assert m.to_tag == "1918181833n"
    assert m.from_tag == "98asjd8"
    assert parse_name_addr(m.headers.get("From")).display == 'J Rosenberg \\"'
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.cseq == (9, "INVITE")
    vias = m.vias
    assert [(v.protocol, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert "rport" in vias[0].params and vias[0].rport is None
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.content_type == "application/sdp"
    contact = parse_name_addr(m.headers.get_all("Contact")[0])
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.body == SDP


INTMETH = (
    b"!interesting-Method0123456789_*+`.%indeed'~ "
    b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
    b"(doesn't-it)@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n"
    b'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" '
    b"<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\r\n"
    b"From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="
    + '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'.encode()
    + b";tag=_token~1'+`*%!-.\r\n"
    b"Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n"
    b"CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"
    b"Max-Forwards: 255\r\n"
    b"extensionHeader-!.%*+_`'~:" + "\ufeff\u5927\u505c\u96fb".encode() + b"\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_intmeth_wide_range_of_valid_characters():
    m = parse_message(INTMETH)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = parse_uri(m.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert parse_name_addr(m.headers.get("To")).display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    frm = parse_name_addr(m.headers.get("From"))
    assert frm.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.cseq == (139122385, m.method)
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert parse_message(m.to_bytes()) == m


def test_esc01_escaped_characters_are_kept_and_accepted():
    m = parse_message(build(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\n"
        "To: sip:%75se%72@example.com\n"
        "From: <sip:I%20have%20spaces@example.net>;tag=938\n"
        "Max-Forwards: 87\n"
        "i: esc01.239409asdfakjkn23onasd0-3234\n"
        "CSeq: 234234 INVITE\n"
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\n"
        "C: application/sdp\n"
        "Contact:\n"
        "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\n"
        "Content-Length: {CL}", SDP))
    assert parse_uri(m.uri).user == "sips%3Auser%40example.com"
    assert parse_uri(m.uri).host == "example.net"
    assert parse_name_addr(m.headers.get("From")).sip_uri.user == "I%20have%20spaces"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type == "application/sdp"
    contact = parse_name_addr(m.headers.get("Contact")).sip_uri
    assert contact.params == {"%6C%72": None, "n%61me": "v%61lue%25%34%31"}


def test_escnull_two_distinct_contacts_with_escaped_nulls():
    m = parse_message(build(
        "REGISTER sip:example.com SIP/2.0\n"
        "To: sip:null-%00-null@example.com\n"
        "From: sip:null-%00-null@example.com;tag=839923423\n"
        "Max-Forwards: 70\n"
        "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\n"
        "CSeq: 14398234 REGISTER\n"
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
        "Contact: <sip:%00@host5.example.com>\n"
        "Contact: <sip:%00%00@host5.example.com>\n"
        "L:0"))
    users = [parse_name_addr(c).sip_uri.user for c in m.headers.get_all("Contact")]
    assert users == ["%00", "%00%00"]
    assert m.from_tag == "839923423"
    assert m.headers.get("Content-Length") == "0"


def test_esc02_percent_is_not_an_escape_outside_uris():
    m = parse_message(build(
        "RE%47IST%45R sip:registrar.example.com SIP/2.0\n"
        'To: "%Z%45" <sip:resource@example.com>\n'
        'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\n'
        "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\n"
        "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\n"
        "CSeq: 29344 RE%47IST%45R\n"
        "Max-Forwards: 70\n"
        "Contact: <sip:alias1@host1.example.com>\n"
        "C%6Fntact: <sip:alias2@host2.example.com>\n"
        "Contact: <sip:alias3@host3.example.com>\n"
        "l: 0"))
    assert m.method == "RE%47IST%45R"
    assert parse_name_addr(m.headers.get("To")).display == "%Z%45"
    assert len(m.headers.get_all("Contact")) == 2
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_display_name_without_space_before_angle_is_accepted():
    m = parse_message(build(
        "OPTIONS sip:user@example.com SIP/2.0\n"
        "To: sip:user@example.com\n"
        "From: caller<sip:caller@example.com>;tag=323\n"
        "Max-Forwards: 70\n"
        "Call-ID: lwsdisp.1234abcd@funky.example.com\n"
        "CSeq: 60 OPTIONS\n"
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\n"
        "l: 0"))
    frm = parse_name_addr(m.headers.get("From"))
    assert (frm.display, frm.tag) == ("caller", "323")


def test_longreq_long_values_and_34_vias_in_mixed_spellings():
    vias = ["Via: SIP/2.0/TCP sip33.example.com", "v: SIP/2.0/TCP sip32.example.com",
            "V: SIP/2.0/TCP sip31.example.com", "Via: SIP/2.0/TCP sip30.example.com",
            "ViA: SIP/2.0/TCP sip29.example.com", "VIa: SIP/2.0/TCP sip28.example.com",
            "VIA: SIP/2.0/TCP sip27.example.com", "via: SIP/2.0/TCP sip26.example.com",
            "viA: SIP/2.0/TCP sip25.example.com", "vIa: SIP/2.0/TCP sip24.example.com",
            "vIA: SIP/2.0/TCP sip23.example.com", "V :  SIP/2.0/TCP sip22.example.com",
            "v :  SIP/2.0/TCP sip21.example.com", "V  : SIP/2.0/TCP sip20.example.com",
            "v  : SIP/2.0/TCP sip19.example.com", "Via : SIP/2.0/TCP sip18.example.com",
            "Via  : SIP/2.0/TCP sip17.example.com"]
    vias += [f"Via: SIP/2.0/TCP sip{i}.example.com" for i in range(16, 0, -1)]
    long_branch = "very" + "long" * 50 + "branchvalue"
    vias.append(f"Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch={long_branch}")
    tag = "1298" * 40 + "2424"
    m = parse_message(build(
        "INVITE sip:user@example.com SIP/2.0\n"
        'To: "I have a user name of ' + "extreme" * 10 + ' proportion"<sip:user@example.com:6000'
        ";unknownparam1=very" + "long" * 20 + "value;longparam" + "name" * 25
        + "=shortvalue;very" + "long" * 25 + "ParameterNameWithNoValue>\n"
        "F: sip:" + "amazinglylongcallername" * 5 + "@example.net;tag=" + tag
        + ";unknownheaderparam" + "name" * 20 + "=unknowheaderparam" + "value" * 15
        + ";unknownValuelessparam" + "nameparam" * 10 + "\n"
        "Call-ID: longreq.one" + "really" * 20 + "longcallid\n"
        "CSeq: 3882340 INVITE\n"
        "Unknown-" + "Long" * 20 + "-Name: unknown-" + "long" * 20 + "-value; unknown-"
        + "long" * 20 + "-parameter-name = unknown-" + "long" * 20 + "-parameter-value\n"
        + "\n".join(vias) + "\n"
        "Max-Forwards: 70\n"
        "Contact: <sip:" + "amazinglylongcallername" * 5 + "@host5.example.net>\n"
        "Content-Type: application/sdp\n"
        "l: {CL}", SDP))
    got = m.vias
    assert len(got) == 34
    assert [v.host for v in got[:33]] == [f"sip{i}.example.com" for i in range(33, 0, -1)]
    assert got[33].branch == long_branch and got[33].received == "192.0.2.5"
    assert m.from_tag == tag
    to = parse_name_addr(m.headers.get("To"))
    assert to.sip_uri.port == 6000 and len(to.sip_uri.params) == 3
    assert m.body == SDP


def test_dblreq_bytes_after_the_body_of_a_datagram_are_ignored():
    second = build(
        "INVITE sip:joe@example.com SIP/2.0\n"
        "t: sip:joe@example.com\n"
        "From: sip:caller@example.net;tag=141334\n"
        "Max-Forwards: 8\n"
        "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\n"
        "CSeq: 8 INVITE\n"
        "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\n"
        "Content-Type: application/sdp\n"
        "Content-Length: {CL}", SDP)
    m = parse_message(build(
        "REGISTER sip:example.com SIP/2.0\n"
        "To: sip:j.user@example.com\n"
        "From: sip:j.user@example.com;tag=43251j3j324\n"
        "Max-Forwards: 8\n"
        "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\n"
        "Contact: sip:j.user@host.example.com\n"
        "CSeq: 8 REGISTER\n"
        "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\n"
        "Content-Length: 0", b"\r\n" + second))
    assert m.method == "REGISTER"
    assert m.body == b""
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_semiuri_semicolon_in_the_user_part_and_folded_accept_list():
    m = parse_message(build(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\n"
        "To: sip:j_user@example.com\n"
        "From: sip:caller@example.org;tag=33242\n"
        "Max-Forwards: 3\n"
        "Call-ID: semiuri.0ha0isndaksdj\n"
        "CSeq: 8 OPTIONS\n"
        "Accept: application/sdp, application/pkcs7-mime,\n"
        "        multipart/mixed, multipart/signed,\n"
        "        message/sip, message/sipfrag\n"
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\n"
        "l: 0"))
    uri = parse_uri(m.uri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", {})
    assert m.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag"]


def test_transports_every_via_transport_token_is_accepted():
    m = parse_message(build(
        "OPTIONS sip:user@example.com SIP/2.0\n"
        "To: sip:user@example.com\n"
        "From: <sip:caller@example.com>;tag=323\n"
        "Max-Forwards: 70\n"
        "Call-ID:  transports.kijh4akdnaqjkwendsasfdj\n"
        "Accept: application/sdp\n"
        "CSeq: 60 OPTIONS\n"
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\n"
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\n"
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\n"
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\n"
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\n"
        "l: 0"))
    assert [v.protocol for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_multipart_body_is_framed_by_content_length():
    binary = bytes(range(256)) * 2
    body = (b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\nHello\r\n--7a9cbec02ceef655\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            + binary + b"\r\n--7a9cbec02ceef655--\r\n")
    raw = build(
        "MESSAGE sip:kumiko@example.org SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\n"
        "Max-Forwards: 70\n"
        "Route: <sip:127.0.0.1:5080>\n"
        "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+8"
        "13gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\n"
        "Contact: <sip:fluffy@127.0.0.1:5070>\n"
        "To: <sip:kumiko@example.org>\n"
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9\n"
        "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\n"
        "CSeq: 1 MESSAGE\n"
        "Content-Transfer-Encoding: binary\n"
        "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\n"
        "Date: Sat, 15 Oct 2005 04:44:56 GMT\n"
        "User-Agent: SIPimp.org/0.2.5 (curses)\n"
        "Content-Length: {CL}", body)
    m = parse_message(raw)
    assert m.body == body
    assert m.top_via.port == 5070 and "rport" in m.top_via.params
    assert m.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    sp = StreamParser()
    assert sp.feed(raw[:100]) == [] and sp.feed(raw[100:]) == [m]


def test_unreason_utf8_reason_phrase_round_trips():
    reason = "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e"
    m = parse_message(build(
        f"SIP/2.0 200 {reason}\n"
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
        "Call-ID: unreason.1234ksdfak3j2erwedfsASdf\n"
        "CSeq: 35 INVITE\n"
        "From: sip:user@example.com;tag=11141343\n"
        "To: sip:user@example.edu;tag=2229\n"
        "Content-Length: {CL}\n"
        "Content-Type: application/sdp\n"
        "Contact: <sip:user@host198.example.com>", SDP))
    assert isinstance(m, SIPResponse)
    assert (m.status, m.reason) == (200, reason)
    assert (m.from_tag, m.to_tag) == ("11141343", "2229")
    assert parse_message(m.to_bytes()) == m


def test_noreason_empty_reason_phrase_is_accepted():
    m = parse_message(build(
        "SIP/2.0 100 \n"
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
        "Call-ID: noreason.asndj203insdf99223ndf\n"
        "CSeq: 35 INVITE\n"
        "From: <sip:user@example.com>;tag=39ansfi3\n"
        "To: <sip:user@example.edu>;tag=902jndnke3\n"
        "Content-Length: 0\n"
        "Contact: <sip:user@host105.example.com>"))
    assert (m.status, m.reason) == (100, "")


COMMON = ("To: sip:user@example.com\nFrom: sip:caller@example.org;tag=33242\n"
          "Max-Forwards: 3\nCall-ID: x.sadonfo23i420jv0as0derf3j3n\n")


@pytest.mark.parametrize("name,raw,check", [
    ("badbranch", build("OPTIONS sip:user@example.com SIP/2.0\n" + COMMON
                        + "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\nCSeq: 8 OPTIONS\nl: 0"),
     lambda m: m.top_via.branch == "z9hG4bK"),
    ("bcast", build("SIP/2.0 200 OK\n"
                    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
                    "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\n"
                    "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\nCSeq: 35 INVITE\n"
                    "From: sip:user@example.com;tag=11141343\nTo: sip:user@example.edu;tag=2229\n"
                    "Content-Length: {CL}\nContent-Type: application/sdp\n"
                    "Contact: <sip:user@host28.example.com>", SDP),
     lambda m: m.vias[1].host == "255.255.255.255"),
    ("bext01", build("OPTIONS sip:user@example.com SIP/2.0\n" + COMMON
                     + "Require: nothingSupportsThis, nothingSupportsThisEither\n"
                     "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n"
                     "CSeq: 8 OPTIONS\nVia: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw\n"
                     "Content-Length: 0"),
     lambda m: m.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]),
    ("cparam01", build("REGISTER sip:example.com SIP/2.0\n"
                       "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
                       "Max-Forwards: 70\nFrom: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\n"
                       "To: sip:watson@example.com\nCall-ID: cparam01.70710@saturn.example.com\n"
                       "CSeq: 2 REGISTER\nContact: sip:+19725552222@gw1.example.net;unknownparam\nl: 0"),
     lambda m: parse_name_addr(m.headers.get("Contact")).params == {"unknownparam": None}),
    ("cparam02", build("REGISTER sip:example.com SIP/2.0\n"
                       "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
                       "Max-Forwards: 70\nFrom: sip:watson@example.com;tag=838293\n"
                       "To: sip:watson@example.com\nCall-ID: cparam02.70710@saturn.example.com\n"
                       "CSeq: 3 REGISTER\nContact: <sip:+19725552222@gw1.example.net;unknownparam>\nl: 0"),
     lambda m: parse_name_addr(m.headers.get("Contact")).sip_uri.params == {"unknownparam": None}),
    ("inv2543", build("INVITE sip:UserB@example.com SIP/2.0\n"
                      "Via: SIP/2.0/UDP iftgw.example.com\n"
                      "From: <sip:+13035551111@ift.client.example.net;user=phone>\n"
                      "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\n"
                      "To: sip:+16505552222@ss1.example.net;user=phone\n"
                      "Call-ID: inv2543.1717@ift.client.example.com\nCSeq: 56 INVITE\n"
                      "Content-Type: application/sdp", SDP),
     lambda m: m.body == SDP and m.top_via.branch is None and m.max_forwards is None
     and m.from_tag is None),
    ("invut", build("INVITE sip:user@example.com SIP/2.0\n"
                    "Contact: <sip:caller@host5.example.net>\nTo: sip:j.user@example.com\n"
                    "From: sip:caller@example.net;tag=8392034\nMax-Forwards: 70\n"
                    "Call-ID: invut.0ha0isndaksdjadsfij34n23d\nCSeq: 235448 INVITE\n"
                    "Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw\n"
                    "Content-Type: application/unknownformat\nContent-Length: {CL}",
                    b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'),
     lambda m: m.content_type == "application/unknownformat"),
    ("regaut01", build("REGISTER sip:example.com SIP/2.0\nTo: sip:j.user@example.com\n"
                       "From: sip:j.user@example.com;tag=87321hj23128\nMax-Forwards: 8\n"
                       "Call-ID: regaut01.0ha0isndaksdj\nCSeq: 9338 REGISTER\n"
                       "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw\n"
                       "Authorization: NoOneKnowsThisScheme opaque-data=here\nContent-Length:0"),
     lambda m: m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"),
    ("regescrt", build("REGISTER sip:example.com SIP/2.0\nTo: sip:user@example.com\n"
                       "From: sip:user@example.com;tag=8\nMax-Forwards: 70\n"
                       "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\nCSeq: 14398234 REGISTER\n"
                       "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
                       "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\nL:0"),
     lambda m: parse_name_addr(m.headers.get("Contact")).sip_uri.headers
     == {"Route": "%3Csip:sip.example.com%3E"}),
    ("sdp01", build("INVITE sip:user@example.com SIP/2.0\nTo: sip:j_user@example.com\n"
                    "Contact: <sip:caller@host15.example.net>\n"
                    "From: sip:caller@example.net;tag=234\nMax-Forwards: 5\n"
                    "Call-ID: sdp01.ndaksdj9342dasdd\nAccept: text/nobodyKnowsThis\n"
                    "CSeq: 8 INVITE\nVia: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw\n"
                    "Content-Length: {CL}\nContent-Type: application/sdp", SDP),
     lambda m: m.headers.get("Accept") == "text/nobodyKnowsThis"),
    ("unksm2", build("REGISTER sip:example.com SIP/2.0\nTo: isbn:2983792873\n"
                     "From: <http://www.example.com>;tag=3234233\n"
                     "Call-ID: unksm2.daksdj@hyphenated-host.example.com\nCSeq: 234902 REGISTER\n"
                     "Max-Forwards: 70\nVia: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\n"
                     "Contact: <name:John_Smith>\nl: 0"),
     lambda m: parse_name_addr(m.headers.get("To")).uri == "isbn:2983792873"
     and m.from_tag == "3234233"),
    ("zeromf", build("OPTIONS sip:user@example.com SIP/2.0\nTo: sip:user@example.com\n"
                     "From: sip:caller@example.net;tag=3ghsd41\n"
                     "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\nCSeq: 39234321 OPTIONS\n"
                     "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\n"
                     "Max-Forwards: 0\nContent-Length: 0"),
     lambda m: m.max_forwards == 0),
    ("baddate (accepted: we never interpret Date)",
     build("INVITE sip:user@example.com SIP/2.0\nTo: sip:user@example.com\n"
           "From: sip:caller@example.net;tag=2234923\nMax-Forwards: 70\n"
           "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\nCSeq: 1392934 INVITE\n"
           "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
           "Date: Fri, 01 Jan 2010 16:00:00 EST\nContact: <sip:caller@host5.example.net>\n"
           "Content-Type: application/sdp\nContent-Length: {CL}", SDP),
     lambda m: m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"),
])
def test_valid_rfc4475_messages_parse(name, raw, check):
    m = parse_message(raw)
    assert check(m), name
    # the same bytes on a stream, split in two anywhere, give the same message
    # (inv2543 has no Content-Length: on a stream that means an empty body)
    if "Content-Length" in m.headers:
        for cut in (1, len(raw) // 2, len(raw) - 1):
            sp = StreamParser()
            assert sp.feed(raw[:cut]) + sp.feed(raw[cut:]) == [m]


def _invalid(head: str, body: bytes = b"") -> bytes:
    return build(head, body)


INVALID = {
    "badinv01": (_invalid(
        "INVITE sip:user@example.com SIP/2.0\nTo: sip:j.user@example.com\n"
        "From: sip:caller@example.net;tag=134161461246\nMax-Forwards: 7\n"
        "Call-ID: badinv01.0ha0isndaksdjasdf3234nas\nCSeq: 8 INVITE\n"
        "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\nContact: \"Joe\" <sip:joe@example.org>;;;;\n"
        "Content-Length: {CL}\nContent-Type: application/sdp", SDP), 400),
    "clerr": (_invalid(
        "INVITE sip:user@example.com SIP/2.0\nMax-Forwards: 80\nTo: sip:j.user@example.com\n"
        "From: sip:caller@example.net;tag=93942939o2\nContact: <sip:caller@hungry.example.net>\n"
        "Call-ID: clerr.0ha0isndaksdjweiafasdk3\nCSeq: 8 INVITE\n"
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\n"
        "Content-Type: application/sdp\nContent-Length: 9999", SDP), 400),
    "ncl": (_invalid(
        "INVITE sip:user@example.com SIP/2.0\nMax-Forwards: 254\nTo: sip:j.user@example.com\n"
        "From: sip:caller@example.net;tag=32394234\nCall-ID: ncl.0ha0isndaksdj2193423r542w35\n"
        "CSeq: 0 INVITE\nVia: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\n"
        "Contact: <sip:caller@example53.example.net>\nContent-Type: application/sdp\n"
        "Content-Length: -999", SDP), 400),
    "scalar02": (_invalid(
        "REGISTER sip:example.com SIP/2.0\n"
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\n"
        "To: <sip:user@example.com>\nFrom: <sip:user@example.com>;tag=239232jh3\n"
        "CSeq: 36893488147419103232 REGISTER\n"
        "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\nMax-Forwards: 300\n"
        "Expires: 1" + "0" * 100 + "\nContact: <sip:user@host129.example.com>\n"
        "  ;expires=280297596632815\nContent-Length: 0"), 400),
    "scalarlg": (_invalid(
        "SIP/2.0 503 Service Unavailable\n"
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\n"
        "To: <sip:user@example.com>\nFrom: <sip:other@example.net>;tag=2easdjfejw\n"
        "CSeq: 9292394834772304023312 OPTIONS\n"
        "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\n"
        "Retry-After: 949302838503028349304023988\n"
        'Warning: 1812 overture "In Progress"\nContent-Length: 0'), 400),
    "quotbal": (_invalid(
        'INVITE sip:user@example.com SIP/2.0\nTo: "Mr. J. User <sip:j.user@example.com>\n'
        "From: sip:caller@example.net;tag=93334\nMax-Forwards: 10\nCall-ID: quotbal.aksdj\n"
        "Contact: <sip:caller@host59.example.net>\nCSeq: 8 INVITE\n"
        "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\n"
        "Content-Type: application/sdp\nContent-Length: {CL}", SDP), 400),
    "ltgtruri": (_invalid(
        "INVITE <sip:user@example.com> SIP/2.0\nTo: sip:user@example.com\n"
        "From: sip:caller@example.net;tag=39291\nMax-Forwards: 23\nCall-ID: ltgtruri.1@192.0.2.5\n"
        "CSeq: 1 INVITE\nVia: SIP/2.0/UDP 192.0.2.5\nContact: <sip:caller@host5.example.net>\n"
        "Content-Type: application/sdp\nContent-Length: {CL}", SDP), 400),
    "lwsruri": (_invalid(
        "INVITE sip:user@example.com; lr SIP/2.0\nTo: sip:user@example.com;tag=3xfe-9921883-z9f\n"
        "From: sip:caller@example.net;tag=231413434\nMax-Forwards: 5\n"
        "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\nCSeq: 2130706432 INVITE\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\n"
        "Contact: <sip:caller@host1.example.net>\nContent-Type: application/sdp\n"
        "Content-Length: {CL}", SDP), 400),
    "lwsstart": (_invalid(
        "INVITE  sip:user@example.com  SIP/2.0\nMax-Forwards: 8\nTo: sip:user@example.com\n"
        "From: sip:caller@example.net;tag=8814\n"
        "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\nCSeq: 1893884 INVITE\n"
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\n"
        "Contact: <sip:caller@host1.example.net>\nContent-Type: application/sdp\n"
        "Content-Length: {CL}", SDP), 400),
    "trws": (_invalid(
        "OPTIONS sip:remote-target@example.com SIP/2.0  \n"
        "Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093\n"
        "To: <sip:remote-target@example.com>\nFrom: <sip:local-resource@example.com>;tag=329429089\n"
        "Call-ID: trws.oicu34958239neffasdhr2345r\nAccept: application/sdp\nCSeq: 238923 OPTIONS\n"
        "Max-Forwards: 70\nContent-Length: 0"), 400),
    "escruri": (_invalid(
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\n"
        "To: sip:user@example.com\nFrom: sip:caller@example.net;tag=341518\nMax-Forwards: 7\n"
        "Contact: <sip:caller@host39923.example.net>\n"
        "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\nCSeq: 149209342 INVITE\n"
        "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\n"
        "Content-Type: application/sdp\nContent-Length: {CL}", SDP), 400),
    "regbadct": (_invalid(
        "REGISTER sip:example.com SIP/2.0\nTo: sip:user@example.com\n"
        "From: sip:user@example.com;tag=998332\nMax-Forwards: 70\n"
        "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\nCSeq: 1 REGISTER\n"
        "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\n"
        "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\nl: 0"), 400),
    "badaspec": (_invalid(
        "OPTIONS sip:user@example.org SIP/2.0\n"
        "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\nMax-Forwards: 70\n"
        'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423\n'
        'To: "Watson, Thomas" < sip:t.watson@example.org >\n'
        "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\nAccept: application/sdp\n"
        "CSeq: 3923239 OPTIONS\nl: 0"), 400),
    "baddn": (_invalid(
        "OPTIONS sip:t.watson@example.org SIP/2.0\n"
        "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\nMax-Forwards:      70\n"
        "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n"
        "To:      Watson, Thomas <sip:t.watson@example.org>\nCall-ID: baddn.31415@c.example.com\n"
        "Accept: application/sdp\nCSeq:    3923239 OPTIONS\nl: 0"), 400),
    "badvers": (_invalid(
        "OPTIONS sip:t.watson@example.org SIP/7.0\n"
        "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\nMax-Forwards:     70\n"
        "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\n"
        "To:      T. Watson <sip:t.watson@example.org>\nCall-ID: badvers.31417@c.example.com\n"
        "CSeq:    1 OPTIONS\nl: 0"), 505),
    "mismatch01": (_invalid(
        "OPTIONS sip:user@example.com SIP/2.0\nTo: sip:j.user@example.com\n"
        "From: sip:caller@example.net;tag=34525\nMax-Forwards: 6\n"
        "Call-ID: mismatch01.dj0234sxdfl3\nCSeq: 8 INVITE\n"
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\nl: 0"), 400),
    "mismatch02": (_invalid(
        "NEWMETHOD sip:user@example.com SIP/2.0\nTo: sip:j.user@example.com\n"
        "From: sip:caller@example.net;tag=34525\nMax-Forwards: 6\n"
        "Call-ID: mismatch02.dj0234sxdfl3\nCSeq: 8 INVITE\n"
        "Contact: <sip:caller@host.example.net>\n"
        "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\n"
        "Content-Type: application/sdp\nl: {CL}", SDP), 400),
    "bigcode": (_invalid(
        "SIP/2.0 4294967301 better not break the receiver\n"
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
        "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\nCSeq: 353494 INVITE\n"
        "From: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\n"
        "Content-Length: 0\nContact: <sip:user@host105.example.com>"), 400),
    "insuf": (_invalid(
        "INVITE sip:user@example.com SIP/2.0\nCSeq: 193942 INVITE\n"
        "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\nContent-Type: application/sdp\n"
        "l: {CL}", SDP), 400),
    "mcl01": (_invalid(
        "OPTIONS sip:user@example.com SIP/2.0\nVia: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\n"
        "To: sip:user@example.com\nFrom: sip:other@example.net;tag=3923942\n"
        "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\nCSeq: 15932 OPTIONS\n"
        "Content-Length: 13\nMax-Forwards: 60\nContent-Length: 5\nContent-Type: text/plain",
        b"There's no way to know how many octets are supposed to be here.\r\n"), 400),
    "multi01": (_invalid(
        "INVITE sip:user@company.com SIP/2.0\nContact: <sip:caller@host25.example.net>\n"
        "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\nMax-Forwards: 70\nCSeq: 5 INVITE\n"
        "Call-ID: multi01.98asdh@192.0.2.1\nCSeq: 59 INVITE\nCall-ID: multi01.98asdh@192.0.2.2\n"
        "From: sip:caller@example.com;tag=3413415\nTo: sip:user@example.com\n"
        "To: sip:other@example.net\nFrom: sip:caller@example.net;tag=2923420123\n"
        "Content-Type: application/sdp\nl: {CL}\nContact: <sip:caller@host36.example.net>\n"
        "Max-Forwards: 5", SDP), 400),
    "unkscm": (_invalid(
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\nTo: sip:user@example.com\n"
        "From: sip:caller@example.net;tag=384\nMax-Forwards: 3\n"
        "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\nCSeq: 3923423 OPTIONS\n"
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\nContent-Length: 0"), 416),
    "novelsc": (_invalid(
        "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\nTo: sip:user@example.com\n"
        "From: sip:caller@example.net;tag=384\nMax-Forwards: 3\n"
        "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34\nCSeq: 3923423 OPTIONS\n"
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\nContent-Length: 0"), 416),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_rfc4475_messages_are_rejected_with_the_right_code(name):
    raw, code = INVALID[name]
    with pytest.raises(SIPParseError) as info:
        parse_message(raw)
    assert info.value.code == code, info.value.reason


# Requests whose Via is readable carry the partial message, so a 400 can be sent back.
@pytest.mark.parametrize("name", ["insuf", "mismatch01", "multi01", "scalar02", "quotbal",
                                  "escruri", "unkscm", "baddn", "clerr"])
def test_broken_requests_with_a_readable_via_keep_the_partial_message(name):
    raw, _ = INVALID[name]
    with pytest.raises(SIPParseError) as info:
        parse_message(raw)
    partial = info.value.message
    assert isinstance(partial, SIPRequest)
    assert partial.top_via.branch is not None


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_on_a_stream_never_raise_anything_but_SIPParseError(name):
    raw, _ = INVALID[name]
    sp = StreamParser()
    try:
        events = sp.feed(raw)
    except SIPParseError:
        return  # framing lost: the transport closes the connection
    # framed: every event is a message or the recoverable error for the broken one
    assert all(isinstance(e, (SIPRequest, SIPResponse, SIPParseError)) for e in events)
    if name == "clerr":
        assert events == []  # waits for 9999 bytes of body that never come
        assert sp.buffered == len(raw)
    else:
        assert any(isinstance(e, SIPParseError) for e in events)


def test_ncl_negative_content_length_on_a_stream_closes_it():
    raw, _ = INVALID["ncl"]
    with pytest.raises(SIPParseError):
        StreamParser().feed(raw)
