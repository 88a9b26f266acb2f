#!/usr/bin/env python3
"""Differential check of the gateway's HTTP/1 request parser against h11 (a strict Python
HTTP/1.1 implementation), acting as a server.

Inputs: every file of fuzz/corpus/request_head, plus the hand-written tricky requests in
TRICKY below. For each input, both sides read up to 8 pipelined requests, as a server
connection would, and the first message where they disagree is reported: one accepts the
head and the other refuses it, different framing (empty / length N / chunked), a different
body outcome (payload size, incomplete, refused chunk framing), or different keep-alive.

The gateway's side is `cargo run --example parse_verdict` (shard/examples/parse_verdict.rs).
Usage: python3 scripts/differential.py [--verdict-bin PATH] [--show-agreements]
Needs `h11` importable (scripts/differential.sh sets up a venv). Exit status: 0; the
disagreements are findings to judge, not failures.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import h11

MAX_MESSAGES = 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus", "request_head")

H = b"Host: gw\r\n"
TRICKY = {
    "obs_fold": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n",
    "obs_fold_tab": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n",
    "obs_fold_first_header": b"GET / HTTP/1.1\r\n Host: gw\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost : gw\r\n\r\n",
    "space_before_colon_te": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "tab_before_colon": b"GET / HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\n" + b"Host: gw\n\n",
    "bare_lf_mixed": b"GET / HTTP/1.1\r\nHost: gw\n\r\n",
    "bare_lf_chunked_body": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
    "lone_cr_line_end": b"GET / HTTP/1.1\rHost: gw\r\r",
    "lone_cr_in_value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n",
    "cl_dup_same": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "cl_dup_diff": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "cl_list_same": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
    "cl_plus": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc",
    "cl_minus": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -3\r\n\r\nabc",
    "cl_hex": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc",
    "cl_leading_zero": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 003\r\n\r\nabc",
    "cl_empty": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n",
    "cl_huge": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999\r\n\r\n",
    "cl_te": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_cl": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "te_chunked_chunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te_gzip_chunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te_chunked_gzip": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_identity": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n",
    "te_two_fields": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_upper": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n",
    "te_empty_element": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
    "te_vtab": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
    "http10_te": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "http10_te_cl": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "http10_keep_alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    "http09": b"GET /\r\n\r\n",
    "http2_version": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "http12_version": b"GET / HTTP/1.2\r\n" + H + b"\r\n",
    "lowercase_version": b"GET / http/1.1\r\n" + H + b"\r\n",
    "name_odd_chars": b"GET / HTTP/1.1\r\n" + H + b"X@A: 1\r\n\r\n",
    "name_quote": b"GET / HTTP/1.1\r\n" + H + b'X"A: 1\r\n\r\n',
    "name_tchar_all": b"GET / HTTP/1.1\r\n" + H + b"!#$%&'*+-.^_`|~09azAZ: 1\r\n\r\n",
    "name_empty": b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n",
    "name_utf8": b"GET / HTTP/1.1\r\n" + H + "X-\u00e9: 1\r\n".encode() + b"\r\n",
    "nul_in_value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "nul_in_target": b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n",
    "nul_in_name": b"GET / HTTP/1.1\r\n" + H + b"X\x00A: 1\r\n\r\n",
    "del_in_value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n",
    "del_in_target": b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n",
    "ctl_in_value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n",
    "obs_text_value": b"GET / HTTP/1.1\r\n" + H + b"X-A: caf\xe9\r\n\r\n",
    "obs_text_target": b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n",
    "absolute_form": b"GET http://gw/mcp/alpha HTTP/1.1\r\n" + H + b"\r\n",
    "absolute_form_https": b"GET https://gw:443/x?y HTTP/1.1\r\n" + H + b"\r\n",
    "authority_form": b"CONNECT gw:443 HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk_form": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk_get": b"GET * HTTP/1.1\r\n" + H + b"\r\n",
    "target_fragment": b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n",
    "target_space": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    "double_space_request_line": b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
    "tab_request_line": b"GET\t/\tHTTP/1.1\r\n" + H + b"\r\n",
    "trailing_space_request_line": b"GET / HTTP/1.1 \r\n" + H + b"\r\n",
    "lowercase_method": b"get / HTTP/1.1\r\n" + H + b"\r\n",
    "odd_method": b"M-SEARCH! / HTTP/1.1\r\n" + H + b"\r\n",
    "leading_crlf": b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "leading_crlf_x2": b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "leading_space": b" GET / HTTP/1.1\r\n" + H + b"\r\n",
    "no_host": b"GET / HTTP/1.1\r\n\r\n",
    "dup_host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "empty_host": b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "host_with_space": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "value_trailing_ws": b"GET / HTTP/1.1\r\n" + H + b"X-A: 1 \t\r\n\r\n",
    "value_leading_tabs": b"GET / HTTP/1.1\r\n" + H + b"X-A:\t\t1\r\n\r\n",
    "expect_other": b"POST / HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\nContent-Length: 0\r\n\r\n",
    "expect_continue_caps": b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 0\r\n\r\n",
    "connection_close_then_more": b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n",
    "connection_list": b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive, close\r\n\r\n",
    "chunk_ext_bare_lf": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3;a\nabc\r\n0\r\n\r\n",
    "chunk_ext_quoted": b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: chunked\r\n\r\n3;a="x;y"\r\nabc\r\n0\r\n\r\n',
    "chunk_size_space": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
    "chunk_size_leading_space": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n",
    "chunk_size_0x": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "chunk_size_long_zeroes": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0000000000000000003\r\nabc\r\n0\r\n\r\n",
    "chunk_data_bad_end": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    "chunk_data_lf_end": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
    "chunk_trailer": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    "chunk_trailer_bad": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nnot a header\r\n\r\n",
    "chunk_last_ext": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0;x=1\r\n\r\n",
    "chunk_then_smuggled": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n" + H + b"\r\n",
    "chunk_lone_cr_size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\rabc\r\n0\r\n\r\n",
    "pipelined_cl": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n" + H + b"\r\n",
}


def h11_keep_alive(request):
    """h11's own reading: HTTP/1.1 or later without `Connection: close` (h11 has no
    HTTP/1.0 keep-alive)."""
    closes = any(n.lower() == b"connection" and b"close" in [t.strip().lower() for t in v.split(b",")]
                 for n, v in request.headers.raw_items())
    return request.http_version >= b"1.1" and not closes


def h11_messages(data):
    """What h11, as a server, reads from `data`: one dict per request, like parse_verdict."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    out = []
    for _ in range(MAX_MESSAGES):
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as err:
            out.append({"verdict": "refused", "reason": str(err)})
            return out
        if event is h11.NEED_DATA:
            out.append({"verdict": "incomplete"})
            return out
        if not isinstance(event, h11.Request):
            out.append({"verdict": "refused", "reason": f"unexpected event {event!r}"})
            return out
        headers = [(n.lower(), v) for n, v in event.headers.raw_items()]
        if any(n == b"transfer-encoding" for n, _ in headers):
            framing = "chunked"
        else:
            lengths = [v for n, v in headers if n == b"content-length"]
            n = int(lengths[0]) if lengths else 0
            framing = f"length {n}" if n else "empty"
        entry = {
            "verdict": "accepted",
            "method": event.method.decode("latin-1"),
            "target": event.target.decode("latin-1"),
            "version": event.http_version.decode("latin-1"),
            "framing": framing,
            "keep_alive": h11_keep_alive(event),
        }
        out.append(entry)
        payload = 0
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as err:
                entry["body"] = f"error: {err}"
                return out
            if ev is h11.NEED_DATA:
                entry["body"] = "incomplete"
                return out
            if isinstance(ev, h11.Data):
                payload += len(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                entry["body"] = "complete"
                entry["payload"] = payload
                break
        if not entry["keep_alive"]:
            return out
        try:
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            conn.start_next_cycle()
        except h11.ProtocolError as err:
            out.append({"verdict": "refused", "reason": f"next cycle: {err}"})
            return out
        if not conn.trailing_data[0]:
            return out
    return out


def first_difference(ours, theirs):
    """(index, what differs) for the first message the two read differently, or None."""
    for i in range(max(len(ours), len(theirs))):
        a = ours[i] if i < len(ours) else {"verdict": "(none)"}
        b = theirs[i] if i < len(theirs) else {"verdict": "(none)"}
        if a["verdict"] != b["verdict"]:
            return i, "verdict"
        if a["verdict"] != "accepted":
            return None
        for key in ("method", "target", "framing", "body", "payload", "keep_alive"):
            x, y = a.get(key), b.get(key)
            if key == "body" and str(x).startswith("error") and str(y).startswith("error"):
                continue  # both refuse the body; the wording differs
            if x != y:
                return i, key
        if not a.get("keep_alive") or a.get("body") != "complete":
            return None
    return None


def describe(m):
    if m["verdict"] == "refused":
        return f"refused ({m['reason']})"
    if m["verdict"] != "accepted":
        return m["verdict"]
    body = m.get("body", "")
    if body == "complete":
        body = f"body {m.get('payload')} B"
    ka = "keep-alive" if m.get("keep_alive") else "close"
    return f"accepted {m['method']} {m['target']!r} HTTP/{m['version']} {m['framing']}, {body}, {ka}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verdict-bin", help="built parse_verdict example (default: cargo run)")
    ap.add_argument("--show-agreements", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="differential-") as tmp:
        inputs = {}
        for name in sorted(os.listdir(CORPUS)):
            with open(os.path.join(CORPUS, name), "rb") as f:
                inputs[f"corpus/{name}"] = f.read()
        for name, data in TRICKY.items():
            inputs[f"tricky/{name}"] = data
        paths = {}
        for i, (name, data) in enumerate(inputs.items()):
            path = os.path.join(tmp, f"{i:04d}")
            with open(path, "wb") as f:
                f.write(data)
            paths[path] = name
        cmd = [args.verdict_bin] if args.verdict_bin else [
            "cargo", "run", "-q", "-p", "mcp-gateway-shard", "--example", "parse_verdict", "--"]
        run = subprocess.run(cmd + [tmp], cwd=ROOT, capture_output=True, check=True)
        ours = {}
        for line in run.stdout.decode().splitlines():
            v = json.loads(line)
            ours[paths[v["file"]]] = v["messages"]

    rows = []
    for name, data in inputs.items():
        a, b = ours[name], h11_messages(data)
        diff = first_difference(a, b)
        if diff is None:
            if args.show_agreements:
                print(f"agree  {name}: {describe(a[0])}")
            continue
        i, key = diff
        a_i = a[i] if i < len(a) else {"verdict": "(none)"}
        b_i = b[i] if i < len(b) else {"verdict": "(none)"}
        rows.append((name, i, key, data, describe(a_i), describe(b_i)))

    print(f"{len(inputs)} inputs ({len(inputs) - len(TRICKY)} corpus, {len(TRICKY)} hand-written); "
          f"{len(rows)} disagreements (first differing message of each)\n")
    for name, i, key, data, a, b in rows:
        shown = repr(data if len(data) <= 160 else data[:160] + b"...")
        print(f"== {name}  [message {i + 1}, differs in {key}]")
        print(f"   input:   {shown}")
        print(f"   gateway: {a}")
        print(f"   h11:     {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
