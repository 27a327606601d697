"""config.py: TOML -> typed settings; every error is one line naming key, expected, found."""

from __future__ import annotations

import dataclasses
import os
import tomllib

import pytest

from msrp_gateway import config
from msrp_gateway.config import ConfigError, from_dict, load, parse_socket

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def error_of(data: dict, source: str = "gw.toml") -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(data, source)
    text = str(info.value)
    assert "\n" not in text
    return text


# --- defaults -------------------------------------------------------------------------------

def test_empty_file_gives_opensips_defaults():
    s = from_dict({})
    assert s.sip.socket == ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")
    assert s.msrp.socket == ("msrp:127.0.0.1:2855",)
    assert s.msrp.my_uri == "msrp://127.0.0.1:2855;tcp"
    assert s.msrp_ua.max_duration == 43200
    gw = s.msrp_gateway
    assert (gw.hash_size, gw.cleanup_interval, gw.session_timeout, gw.message_timeout) == (
        10, 60, 43200, 7200)
    assert s.mi.http == "127.0.0.1:8888" and s.mi.address == ("127.0.0.1", 8888)
    assert s.routing.script == "" and s.routing.trusted == ("127.0.0.0/8", "::1/128")


def test_bundled_file_equals_the_built_in_defaults():
    """The bundled file documents every key with its default value: they must agree."""
    assert load(os.path.join(REPO, "msrp_gateway", "etc", "msrpgw.toml")) == from_dict({})
    assert config.load_default() == from_dict({})


def test_bundled_file_lists_every_key():
    with open(os.path.join(REPO, "msrp_gateway", "etc", "msrpgw.toml"), "rb") as f:
        data = tomllib.load(f)
    for section in dataclasses.fields(config.Settings):
        if section.name == "source":
            continue
        keys = {f.name for f in dataclasses.fields(section.default_factory)}
        assert set(data[section.name]) == keys, section.name


def test_top_level_etc_is_the_package_directory():
    assert os.path.realpath(os.path.join(REPO, "etc")) == os.path.realpath(
        os.path.join(REPO, "msrp_gateway", "etc"))


def test_settings_are_frozen():
    s = from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sip.outbound_proxy = "sip:x"  # type: ignore[misc]


def test_values_are_typed_and_stored():
    s = from_dict({
        "sip": {"socket": ["udp:10.0.0.1:5070", "tls:[::1]:5071", "tcp:gw.example.net"],
                "outbound_proxy": "sip:proxy.example.net;transport=tcp"},
        "msrp": {"socket": "msrps:127.0.0.1:2856", "my_uri": "msrps://127.0.0.1:2856;tcp",
                 "relay_uri": "msrp://relay.example.net:2855;tcp", "send_timeout": 5},
        "tls": {"certificate": __file__, "private_key": __file__},
        "msrp_gateway": {"hash_size": 20, "session_timeout": 100, "message_timeout": 100},
        "mi": {"http": "[::1]:9000"},
        "routing": {"trusted": ["10.0.0.0/8"]},
    })
    assert s.sip.sockets[1] == config.SocketAddress("tls", "::1", 5071)
    assert s.sip.sockets[2] == config.SocketAddress("tcp", "gw.example.net", 5060)
    assert s.msrp.socket == ("msrps:127.0.0.1:2856",)
    assert s.msrp.send_timeout == 5.0 and isinstance(s.msrp.send_timeout, float)
    assert s.mi.address == ("::1", 9000)
    assert str(s.routing.trusted_networks[0]) == "10.0.0.0/8"


def test_socket_strings_round_trip_and_default_ports():
    assert str(parse_socket("udp:[::1]:5060")) == "udp:[::1]:5060"
    assert parse_socket("tls:127.0.0.1").port == 5061
    assert parse_socket("msrp:127.0.0.1").port == 2855
    assert parse_socket("UDP:127.0.0.1:0").port == 0


@pytest.mark.parametrize("bad", ["udp:", "udp:1.2.3.4:70000", "udp:::1:5060", "sctp:1.2.3.4:5",
                                 "udp:[::1", "udp:host_name:5", "udp:1.2.3.4:-1", "1.2.3.4:5060"])
def test_bad_socket_strings_are_refused(bad):
    with pytest.raises(ValueError):
        parse_socket(bad)


# --- every error message ------------------------------------------------------------------

def test_unknown_table():
    assert error_of({"sipp": {}}).startswith(
        "gw.toml: [sipp]: expected one of the tables [sip], [msrp]")
    assert error_of({"sipp": {}}).endswith("found an unknown table")


def test_unknown_key_names_the_known_ones():
    text = error_of({"msrp_gateway": {"hash_sise": 3}})
    assert text.startswith("gw.toml: [msrp_gateway] hash_sise: expected one of the known keys "
                           "(hash_size, cleanup_interval,")
    assert text.endswith("found an unknown key")


def test_section_that_is_not_a_table():
    assert error_of({"sip": 5}) == "gw.toml: [sip]: expected a table, found 5"


@pytest.mark.parametrize("section,key,value,expected", [
    ("msrp_gateway", "hash_size", "10", "an integer"),
    ("msrp_gateway", "hash_size", True, "an integer"),
    ("msrp_gateway", "hash_size", 1.5, "an integer"),
    ("msrp", "send_timeout", "30", "a number"),
    ("sip", "socket", 5060, "an array of strings"),
    ("sip", "socket", ["udp:127.0.0.1:5060", 1], "an array of strings"),
    ("sip", "outbound_proxy", 1, "a string"),
    ("msrp_gateway", "failure_message", "yes", "true or false"),
])
def test_wrong_types(section, key, value, expected):
    text = error_of({section: {key: value}})
    assert text.startswith(f"gw.toml: [{section}] {key}: expected {expected}, found ")


@pytest.mark.parametrize("value", [0, 21, -1])
def test_hash_size_outside_1_to_20(value):
    assert error_of({"msrp_gateway": {"hash_size": value}}) == (
        f"gw.toml: [msrp_gateway] hash_size: expected a number from 1 to 20, found {value}")


def test_hash_size_limits_accepted():
    assert from_dict({"msrp_gateway": {"hash_size": 1}}).msrp_gateway.hash_size == 1
    assert from_dict({"msrp_gateway": {"hash_size": 20}}).msrp_gateway.hash_size == 20


def test_session_timeout_below_message_timeout():
    assert error_of({"msrp_gateway": {"session_timeout": 100, "message_timeout": 200}}) == (
        "gw.toml: [msrp_gateway] session_timeout: expected a value >= message_timeout (200), "
        "as in OpenSIPS, found 100")


def test_positive_bounds():
    assert error_of({"msrp_gateway": {"cleanup_interval": 0}}) == (
        "gw.toml: [msrp_gateway] cleanup_interval: expected a number >= 1, found 0")


def test_msrp_layer_bounds_are_settable():
    m = from_dict({"msrp": {"frame_timeout": 5, "max_connections": 20,
                            "max_reassembly_bytes": 8 * 1024 * 1024}}).msrp
    assert (m.frame_timeout, m.max_connections, m.max_reassembly_bytes) == (
        5.0, 20, 8 * 1024 * 1024)
    assert isinstance(m.frame_timeout, float)
    d = from_dict({}).msrp
    assert (d.frame_timeout, d.max_connections, d.max_reassembly_bytes) == (
        60.0, 10000, 256 * 1024 * 1024)


@pytest.mark.parametrize("key,value,expected", [
    ("frame_timeout", 0, "a number >= 1"),
    ("frame_timeout", "60", "a number"),
    ("max_connections", 0, "a number >= 1"),
    ("max_connections", 1.5, "an integer"),
    ("max_reassembly_bytes", 100, "a number >= 1024"),
])
def test_msrp_layer_bounds_refuse_bad_values_in_one_line(key, value, expected):
    assert error_of({"msrp": {key: value}}) == (
        f"gw.toml: [msrp] {key}: expected {expected}, found {value!r}"
        if isinstance(value, str) else
        f"gw.toml: [msrp] {key}: expected {expected}, found {value}")


def test_reassembly_budget_below_one_message_is_refused():
    assert error_of({"msrp": {"max_message_size": 4096, "max_reassembly_bytes": 2048}}) == (
        "gw.toml: [msrp] max_reassembly_bytes: expected a value >= max_message_size (4096), "
        "or no chunked message of that size could ever be reassembled, found 2048")


def test_sip_socket_with_msrp_scheme_names_the_element():
    assert error_of({"sip": {"socket": ["udp:127.0.0.1:5060", "msrp:127.0.0.1:2855"]}}) == (
        "gw.toml: [sip] socket[1]: expected a socket string starting with one of udp:, tcp:, "
        "tls:, found 'msrp:127.0.0.1:2855'")


def test_msrp_socket_with_sip_scheme():
    assert error_of({"msrp": {"socket": ["tcp:127.0.0.1:2855"]}}) == (
        "gw.toml: [msrp] socket[0]: expected a socket string starting with one of msrp:, "
        "msrps:, found 'tcp:127.0.0.1:2855'")


def test_socket_with_bad_port():
    assert error_of({"sip": {"socket": ["udp:127.0.0.1:99999"]}}) == (
        "gw.toml: [sip] socket[0]: expected 'udp:HOST:PORT' with an IP address or host name "
        "and a port 0..65535, found 'udp:127.0.0.1:99999'")


@pytest.mark.parametrize("sockets", [{"sip": {"socket": ["tls:127.0.0.1:5061"]}},
                                     {"msrp": {"socket": ["msrps:127.0.0.1:2856"]}}])
def test_tls_socket_needs_certificate_and_key(sockets):
    text = error_of(sockets)
    assert text.startswith("gw.toml: [tls] certificate: expected a certificate file for '")
    assert text.endswith("found none")
    text = error_of({**sockets, "tls": {"certificate": __file__}})
    assert text.startswith("gw.toml: [tls] private_key: expected a private key file for '")


def test_tls_files_must_exist():
    assert error_of({"tls": {"certificate": "/nonexistent/cert.pem"}}) == (
        "gw.toml: [tls] certificate: expected a path to an existing file (or ''), "
        "found '/nonexistent/cert.pem'")


def test_verify_peers_needs_a_ca_file():
    assert error_of({"tls": {"verify_peers": True}}) == (
        "gw.toml: [tls] ca_certificates: expected a CA file when verify_peers is true, "
        "found none")


def test_my_uri_must_be_msrp_over_tcp():
    assert error_of({"msrp": {"my_uri": "sip:127.0.0.1"}}) == (
        "gw.toml: [msrp] my_uri: expected an MSRP URI such as 'msrp://127.0.0.1:2855;tcp' "
        "(msrp or msrps, ;tcp), found 'sip:127.0.0.1'")
    assert error_of({"msrp": {"relay_uri": "msrp://relay:2855;udp"}}).startswith(
        "gw.toml: [msrp] relay_uri: expected an MSRP URI")


def test_msrps_my_uri_needs_tls_files():
    assert error_of({"msrp": {"my_uri": "msrps://127.0.0.1:2855;tcp"}}).startswith(
        "gw.toml: [tls] certificate: expected a certificate file for 'msrps://")


def test_relay_credentials_come_both_or_neither_and_only_with_a_relay():
    relay = "msrp://relay.example.net:2855;tcp"
    s = from_dict({"msrp": {"relay_uri": relay, "relay_username": "gw",
                            "relay_password": "s3cret"}})
    assert (s.msrp.relay_uri, s.msrp.relay_username, s.msrp.relay_password) == (
        relay, "gw", "s3cret")
    assert from_dict({"msrp": {"relay_uri": relay}}).msrp.relay_username == ""
    assert error_of({"msrp": {"relay_uri": relay, "relay_username": "gw"}}) == (
        "gw.toml: [msrp] relay_password: expected a password when relay_username is set, "
        "found none")
    assert error_of({"msrp": {"relay_uri": relay, "relay_password": "s3cret"}}) == (
        "gw.toml: [msrp] relay_username: expected a user name when relay_password is set, "
        "found none")
    text = error_of({"msrp": {"relay_username": "gw", "relay_password": "s3cret"}})
    assert text == ("gw.toml: [msrp] relay_username: expected '' when relay_uri is not set "
                    "(the credentials are for an RFC 4976 relay), found a value")
    assert "s3cret" not in error_of({"msrp": {"relay_password": "s3cret"}})


def test_msrps_relay_needs_tls_files():
    assert error_of({"msrp": {"relay_uri": "msrps://relay.example.net:2855;tcp"}}) == (
        "gw.toml: [tls] certificate: expected a certificate file for "
        "'msrps://relay.example.net:2855;tcp', found none")


def test_process_gc_settings():
    assert (from_dict({}).process.gc_freeze, from_dict({}).process.gc_thresholds) == (
        True, (50000, 20, 1000))
    off = from_dict({"process": {"gc_freeze": False, "gc_thresholds": []}}).process
    assert (off.gc_freeze, off.gc_thresholds) == (False, ())
    assert from_dict({"process": {"gc_thresholds": [2000, 10, 10]}}).process.gc_thresholds == (
        2000, 10, 10)
    expected = ("[] (Python's own) or three integers [gen0, gen1, gen2] with gen0 from 100 "
                "to 10000000 and gen1, gen2 from 1 to 100000")
    # gen-0 0 would switch the collector off: refused, as are other shapes
    assert error_of({"process": {"gc_thresholds": [0, 20, 1000]}}) == (
        f"gw.toml: [process] gc_thresholds: expected {expected}, found an array [0, 20, 1000]")
    assert error_of({"process": {"gc_thresholds": [50000]}}).endswith("found an array [50000]")
    assert error_of({"process": {"gc_thresholds": ["50000", 20, 1000]}}) == (
        "gw.toml: [process] gc_thresholds: expected an array of integers, "
        "found an array ['50000', 20, 1000]")
    assert error_of({"process": {"gc_thresholds": [True, 20, 1000]}}).startswith(
        "gw.toml: [process] gc_thresholds: expected an array of integers")
    assert error_of({"process": {"gc_freeze": "yes"}}) == (
        "gw.toml: [process] gc_freeze: expected true or false, found 'yes'")


def test_outbound_proxy_must_be_a_sip_uri():
    assert error_of({"sip": {"outbound_proxy": "proxy.example.net"}}) == (
        "gw.toml: [sip] outbound_proxy: expected a SIP URI such as "
        "'sip:proxy.example.net;transport=tcp', found 'proxy.example.net'")


def test_mi_http_address():
    assert error_of({"mi": {"http": "localhost"}}) == (
        "gw.toml: [mi] http: expected 'HOST:PORT' (for example '127.0.0.1:8888'), or '' to "
        "turn it off, found 'localhost'")
    assert from_dict({"mi": {"http": ""}}).mi.address is None


def test_mi_basic_auth_needs_both_halves():
    assert error_of({"mi": {"basic_user": "ops"}}) == (
        "gw.toml: [mi] basic_password: expected a password when basic_user is set, found none")
    assert error_of({"mi": {"basic_password": "pw"}}) == (
        "gw.toml: [mi] basic_user: expected a user name when basic_password is set, found none")


def test_trusted_networks_name_the_bad_element():
    assert error_of({"routing": {"trusted": ["127.0.0.0/8", "10.0.0.0/33"]}}) == (
        "gw.toml: [routing] trusted[1]: expected an IP network such as '127.0.0.0/8' or "
        "'::1/128', found '10.0.0.0/33'")


def test_routing_script_must_exist():
    assert error_of({"routing": {"script": "/nonexistent/route.py"}}) == (
        "gw.toml: [routing] script: expected a path to an existing file (or ''), "
        "found '/nonexistent/route.py'")


def test_enumerated_values():
    assert error_of({"log": {"level": "verbose"}}) == (
        "gw.toml: [log] level: expected one of 'debug', 'info', 'warn', 'error', 'critical', "
        "found 'verbose'")
    assert error_of({"msrp_ua": {"actpass_answer": "both"}}) == (
        "gw.toml: [msrp_ua] actpass_answer: expected one of 'passive', 'active', found 'both'")


# --- files ----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "none.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: file: expected a readable TOML file, found no such file"


def test_invalid_toml_is_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[sip]\nsocket = [\"udp:127.0.0.1:5060\"\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: file: expected valid TOML, found ")
    assert "\n" not in text


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: file: expected ")


def test_loaded_file_values_reach_settings(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[msrp_gateway]\nhash_size = 4\n[sip]\nsocket = "udp:127.0.0.1:0"\n')
    s = load(path)
    assert s.msrp_gateway.hash_size == 4 and s.sip.socket == ("udp:127.0.0.1:0",)
    assert s.source == str(path)


# --- SIP timers and transport bounds, MSRP per-connection bounds (issue 2/5 follow-up) ------

def test_sip_timers_and_transport_bounds_default_and_are_settable():
    d = from_dict({}).sip
    assert (d.timer_t1, d.timer_t2, d.timer_t4, d.max_completed, d.connect_timeout,
            d.max_pending_per_connection, d.max_write_backlog) == (
        0.5, 4.0, 5.0, 400000, 10.0, 256, 4 * 1024 * 1024)
    s = from_dict({"sip": {"timer_t1": 0.05, "timer_t2": 1, "timer_t4": 2,
                           "max_completed": 10, "connect_timeout": 3,
                           "max_pending_per_connection": 4,
                           "max_write_backlog": 65536}}).sip
    assert (s.timer_t1, s.timer_t2, s.timer_t4, s.max_completed, s.connect_timeout,
            s.max_pending_per_connection, s.max_write_backlog) == (
        0.05, 1.0, 2.0, 10, 3.0, 4, 65536)
    assert isinstance(s.timer_t2, float) and isinstance(s.connect_timeout, float)


@pytest.mark.parametrize("key,value,expected", [
    ("timer_t1", 0, "a number from 0.001 to 60"),
    ("timer_t1", "0.5", "a number"),
    ("timer_t2", -1, "a number from 0.001 to 600"),
    ("timer_t4", 0, "a number from 0.001 to 600"),
    ("max_completed", 0, "a number >= 1"),
    ("max_completed", 1.5, "an integer"),
    ("connect_timeout", 0, "a number >= 0.1"),
    ("max_pending_per_connection", 0, "a number >= 1"),
    ("max_write_backlog", 100, "a number >= 4096"),
])
def test_sip_timers_and_bounds_refuse_bad_values_in_one_line(key, value, expected):
    assert error_of({"sip": {key: value}}) == (
        f"gw.toml: [sip] {key}: expected {expected}, found {value!r}")


def test_timer_t1_must_be_below_timer_t2():
    assert error_of({"sip": {"timer_t1": 4.0, "timer_t2": 4.0}}) == (
        "gw.toml: [sip] timer_t1: expected a value below timer_t2 (4.0), found 4.0")
    assert error_of({"sip": {"timer_t1": 5}}) == (
        "gw.toml: [sip] timer_t1: expected a value below timer_t2 (4.0), found 5.0")


def test_msrp_per_connection_bounds_default_and_are_settable():
    d = from_dict({}).msrp
    assert (d.max_in_flight, d.max_send_queue_bytes) == (256, 64 * 1024 * 1024)
    m = from_dict({"msrp": {"max_in_flight": 2, "max_send_queue_bytes": 4096}}).msrp
    assert (m.max_in_flight, m.max_send_queue_bytes) == (2, 4096)
    assert error_of({"msrp": {"max_in_flight": 0}}) == (
        "gw.toml: [msrp] max_in_flight: expected a number >= 1, found 0")
    assert error_of({"msrp": {"max_send_queue_bytes": 10}}) == (
        "gw.toml: [msrp] max_send_queue_bytes: expected a number >= 1024, found 10")


def test_gateway_bounds_and_stop_timeout_are_settable_and_checked():
    g = from_dict({"msrp_gateway": {"max_queued_bytes": 10, "max_pending_messages": 3,
                                    "stop_timeout": 1}}).msrp_gateway
    assert (g.max_queued_bytes, g.max_pending_messages, g.stop_timeout) == (10, 3, 1.0)
    assert error_of({"msrp_gateway": {"stop_timeout": 0}}) == (
        "gw.toml: [msrp_gateway] stop_timeout: expected a number >= 0.1, found 0")
    assert error_of({"msrp_gateway": {"max_pending_messages": 0}}) == (
        "gw.toml: [msrp_gateway] max_pending_messages: expected a number >= 1, found 0")


def test_default_session_limits_fit_in_the_dialog_table():
    """Session 20,001 used to get 202 and then 'dialog table full': defaults now agree."""
    s = from_dict({})
    assert s.msrp_gateway.max_sessions <= s.sip.max_dialogs
    assert s.msrp_ua.max_sessions <= s.sip.max_dialogs


@pytest.mark.parametrize("section", ["msrp_gateway", "msrp_ua"])
def test_session_limit_above_max_dialogs_is_refused(section):
    data = {"sip": {"max_dialogs": 20000}, "msrp_gateway": {"max_sessions": 20000},
            "msrp_ua": {"max_sessions": 20000}}
    data[section] = {"max_sessions": 20001}
    assert error_of(data) == (
        f"gw.toml: [{section}] max_sessions: expected a value <= [sip] max_dialogs (20000), "
        "as each session needs a SIP dialog, found 20001")
    s = from_dict({"sip": {"max_dialogs": 20000}, "msrp_gateway": {"max_sessions": 20000},
                   "msrp_ua": {"max_sessions": 20000}})
    assert s.sip.max_dialogs == 20000


def test_sip_needs_at_least_one_socket():
    """An empty list used to pass and then fail start-up with an IndexError."""
    assert error_of({"sip": {"socket": []}}) == (
        "gw.toml: [sip] socket: expected at least one SIP socket string (the first one gives "
        "the Via and Contact of what we send), found an array []")


def test_relay_expires_defaults_to_the_relays_choice_and_takes_its_whole_range():
    relay = "msrp://relay.example.net:2855;tcp"
    assert from_dict({}).msrp.relay_expires == 0
    for seconds in (0, 1, 900, 2**32 - 1):
        assert from_dict({"msrp": {"relay_uri": relay,
                                   "relay_expires": seconds}}).msrp.relay_expires == seconds


@pytest.mark.parametrize("value, found", [(-1, "-1"), (2**32, "4294967296")])
def test_relay_expires_outside_the_rfc_4976_range_is_refused_in_one_line(value, found):
    assert error_of({"msrp": {"relay_uri": "msrp://relay.example.net:2855;tcp",
                              "relay_expires": value}}) == (
        "gw.toml: [msrp] relay_expires: expected seconds from 1 to 4294967295 for the relay "
        f"AUTH's Expires, or 0 to let the relay choose, found {found}")


@pytest.mark.parametrize("value, expected", [(900.0, "an integer"), ("900", "an integer"),
                                             (True, "an integer")])
def test_relay_expires_must_be_an_integer(value, expected):
    text = error_of({"msrp": {"relay_uri": "msrp://relay.example.net:2855;tcp",
                              "relay_expires": value}})
    assert text.startswith(f"gw.toml: [msrp] relay_expires: expected {expected}, found ")


def test_relay_expires_without_a_relay_is_refused():
    assert error_of({"msrp": {"relay_expires": 900}}) == (
        "gw.toml: [msrp] relay_expires: expected 0 when relay_uri is not set (it is the "
        "lifetime asked of an RFC 4976 relay), found 900")
    assert from_dict({"msrp": {"relay_expires": 0}}).msrp.relay_expires == 0


# --- [sip] dns_servers / dns_cache_size -------------------------------------------------------

def test_dns_servers_default_to_resolv_conf_and_the_cache_to_4096():
    sip = from_dict({}).sip
    assert sip.dns_servers == () and sip.dns_server_addresses == ()
    assert sip.dns_cache_size == 4096


def test_dns_servers_take_ip_literals_with_optional_ports():
    sip = from_dict({"sip": {"dns_servers": ["127.0.0.1", "127.0.0.53:5353", "::1",
                                             "[::1]:5300", "[2001:db8::1]"]}}).sip
    assert sip.dns_server_addresses == (("127.0.0.1", 53), ("127.0.0.53", 5353), ("::1", 53),
                                        ("::1", 5300), ("2001:db8::1", 53))
    assert sip.dns_servers[0] == "127.0.0.1"  # kept as written


@pytest.mark.parametrize("bad", ["dns.example.net", "dns.example.net:53", "127.0.0.1:0",
                                 "127.0.0.1:65536", "[::1]:0", "[::1]:", "127.0.0.1:x", "",
                                 "300.1.1.1"])
def test_dns_servers_refuse_names_bad_ports_and_unbracketed_v6_ports_in_one_line(bad):
    text = error_of({"sip": {"dns_servers": ["127.0.0.1", bad]}})
    assert text.startswith("gw.toml: [sip] dns_servers[1]: expected a DNS server 'IP' or "
                           "'IP:PORT' with a port 1..65535 (IPv6 with a port as '[::1]:53'")
    assert text.endswith(f"found {bad!r}")


def test_dns_servers_are_bounded_and_typed():
    assert from_dict({"sip": {"dns_servers": ["127.0.0.1"] * 8}}).sip.dns_servers == \
        ("127.0.0.1",) * 8
    text = error_of({"sip": {"dns_servers": ["127.0.0.1"] * 9}})
    assert text.startswith("gw.toml: [sip] dns_servers: expected at most 8 DNS servers")
    assert error_of({"sip": {"dns_servers": [53]}}) == (
        "gw.toml: [sip] dns_servers: expected an array of strings, found an array [53]")


@pytest.mark.parametrize("value", [1, 4096, 1_000_000])
def test_dns_cache_size_takes_its_range(value):
    assert from_dict({"sip": {"dns_cache_size": value}}).sip.dns_cache_size == value


@pytest.mark.parametrize("value, expected", [
    (0, "a number from 1 to 1000000"), (1_000_001, "a number from 1 to 1000000"),
    (-5, "a number from 1 to 1000000"), ("big", "an integer"), (4096.0, "an integer")])
def test_dns_cache_size_refuses_values_outside_it_in_one_line(value, expected):
    assert error_of({"sip": {"dns_cache_size": value}}).startswith(
        f"gw.toml: [sip] dns_cache_size: expected {expected}, found ")


def test_every_accepted_dns_server_is_one_the_resolver_accepts():
    """config.py (sans-IO) and dns.parse_servers check the same thing: what the file lets
    through never fails at start-up."""
    from msrp_gateway.sip.dns import parse_servers
    servers = ["127.0.0.1", "10.1.2.3:5353", "::1", "[::1]:53", "[fe80::1]:1"]
    sip = from_dict({"sip": {"dns_servers": servers}}).sip
    assert parse_servers(servers) == list(sip.dns_server_addresses)
    assert parse_servers(list(sip.dns_server_addresses)) == list(sip.dns_server_addresses)


# --- [msrp_gateway] delivery (end-to-end delivery switch) -----------------------------------

def test_delivery_defaults_to_hop_and_takes_end_to_end():
    g = from_dict({}).msrp_gateway
    assert (g.delivery, g.delivery_timeout) == ("hop", 25.0)
    g = from_dict({"msrp_gateway": {"delivery": "end_to_end", "delivery_timeout": 10}}
                  ).msrp_gateway
    assert (g.delivery, g.delivery_timeout) == ("end_to_end", 10.0)
    assert isinstance(g.delivery_timeout, float)


def test_delivery_value_is_refused_in_one_line():
    assert error_of({"msrp_gateway": {"delivery": "e2e"}}) == (
        "gw.toml: [msrp_gateway] delivery: expected one of 'hop', 'end_to_end', found 'e2e'")
    assert error_of({"msrp_gateway": {"delivery": True}}) == (
        "gw.toml: [msrp_gateway] delivery: expected a string, found true")


@pytest.mark.parametrize("value", [0, 0.5, 31, 60])
def test_delivery_timeout_outside_1_to_30(value):
    assert error_of({"msrp_gateway": {"delivery_timeout": value}}) == (
        f"gw.toml: [msrp_gateway] delivery_timeout: expected a number from 1 to 30, "
        f"found {value}")


def test_end_to_end_delivery_timeout_must_be_below_the_senders_timer_f():
    data = {"sip": {"timer_t1": 0.25},
            "msrp_gateway": {"delivery": "end_to_end", "delivery_timeout": 16}}
    assert error_of(data) == (
        "gw.toml: [msrp_gateway] delivery_timeout: expected a value below 64 * [sip] "
        "timer_t1 (16 s, the sender's Timer F), found 16.0")
    data["msrp_gateway"]["delivery_timeout"] = 15.5
    assert from_dict(data).msrp_gateway.delivery_timeout == 15.5
    # with hop delivery the bound is unused, so a short T1 (as tests use) is fine
    assert from_dict({"sip": {"timer_t1": 0.05}}).msrp_gateway.delivery == "hop"


def test_msrp_connect_timeout_is_a_positive_number_of_seconds():
    assert from_dict({}).msrp.connect_timeout == 10.0
    assert from_dict({"msrp": {"connect_timeout": 0.5}}).msrp.connect_timeout == 0.5
    assert error_of({"msrp": {"connect_timeout": 0}}) == (
        "gw.toml: [msrp] connect_timeout: expected a number >= 0.1, found 0")
