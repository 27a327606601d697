# msrpgw routing script: the built-in default route, written out to copy and edit.
#
# Point [routing] script in msrpgw.toml at your copy. msrpgw calls:
#   route(req, gw)               for every request outside a dialog
#   on_event(name, params, gw)   for every event the gateway raises (optional)
#
# req: method, ruri, from_uri, to_uri, from_tag, to_tag, from_aor, to_aor, is_initial,
#      headers, header(name), body, content_type, call_id, source_ip, source_port,
#      transport, trusted (source inside [routing] trusted), responded,
#      reply(code, reason=None, headers=(), body=b"", content_type=None)
# gw:  msg_to_msrp(req, key, content_types)
#      msrp_gw_answer(req, key, content_types, from_uri, to_uri, ruri)
#      send_message(from_uri, to_uri, ruri, body, content_type="text/plain")
#      list_sessions(), end_session(key), settings
# The two gateway functions return 1 on success (2 with delivery = "end_to_end":
# accepted, the MESSAGE's answer follows the MSRP result) and a negative number on
# error; they answer the request themselves (202 for a MESSAGE, the UA's 200 for an
# INVITE, or the error), so the route needs no reply of its own after calling them.
#
# msg_to_msrp is for MESSAGE only (anything else: 500); a MESSAGE the MSRP side cannot
# take at once (its send queue full) gets 503 with Retry-After, not 202.
#
# A route that returns without answering gets a 500 sent for it. route and on_event are
# plain functions (def, not async def: loading refuses those); to wait for something,
# return a Deferred (e.g. Deferred.fromCoroutine(coro)).


def route(req, gw):
    if req.method == "ACK":
        return
    if not req.trusted:
        req.reply(403, "Forbidden")
        return

    if req.method == "MESSAGE":
        # The MSRP-side user (the MESSAGE's To) comes first in the key, in both
        # directions, so a reply MESSAGE finds the session an INVITE opened.
        key = f"{req.to_aor}-{req.from_aor}"
        gw.msg_to_msrp(req, key, "text/plain")
    elif req.method == "INVITE" and req.is_initial:
        key = f"{req.from_aor}-{req.to_aor}"
        gw.msrp_gw_answer(req, key, "text/plain", req.from_uri, req.to_uri, req.ruri)
    else:
        req.reply(405, "Method Not Allowed",
                  headers=[("Allow", "INVITE, ACK, BYE, CANCEL, MESSAGE, OPTIONS")])


def on_event(name, params, gw):
    # E_MSRP_GW_SETUP_FAILED params: key, from_uri, to_uri, ruri, code, reason
    # (code and reason are None when no final reply caused the failure).
    if name != "E_MSRP_GW_SETUP_FAILED" or not gw.settings.failure_message:
        return
    code, reason = params["code"], params["reason"]
    why = f"{code} {reason}" if code is not None else "no answer"
    text = f"Your message to {params['from_uri']} could not be delivered ({why})."
    gw.send_message(params["from_uri"], params["to_uri"], params["ruri"], text.encode(),
                    "text/plain", key=params["key"])
