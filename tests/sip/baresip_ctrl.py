#!/usr/bin/env python3
"""Drive a running baresip through its ctrl_tcp module (stdlib only).

    baresip_ctrl.py PORT COMMAND [PARAMS] [--wait EVENT_TYPE] [--timeout S]

Sends one command and prints, one JSON object a line, the response and the
events that arrive until --wait's event type is seen (exit 0) or --timeout
seconds pass (exit 1; default 10). Without --wait it returns after the
response. Examples:

    baresip_ctrl.py 4441 dial sip:bob@127.0.0.1:5130 --wait CALL_ESTABLISHED
    baresip_ctrl.py 4441 hangup --wait CALL_CLOSED
    baresip_ctrl.py 4441 reginfo

Wire format (baresip 1.0 ctrl_tcp): each message is a netstring,
"<length>:<json>," in both directions. A command is
{"command": "dial", "params": "sip:...", "token": "..."}; the answer is
{"response": true, "ok": true, "data": "...", "token": "..."}; events are
{"event": true, "class": "call", "type": "CALL_ESTABLISHED",
 "accountaor": "sip:...", "direction": "outgoing", "peeruri": "sip:...",
 "id": "<call id>", "param": "..."}.
The commands are the menu module's long names: dial, hangup, accept,
reginfo, listcalls, quit ...
"""

import argparse
import json
import socket
import sys
import time


def netstring(obj):
    data = json.dumps(obj).encode()
    return str(len(data)).encode() + b":" + data + b","


def read_netstrings(buf):
    """Split complete netstrings off buf; return (messages, rest)."""
    out = []
    while True:
        colon = buf.find(b":")
        if colon < 0:
            return out, buf
        try:
            n = int(buf[:colon])
        except ValueError:
            raise ValueError("bad netstring prefix %r" % buf[:colon])
        end = colon + 1 + n
        if len(buf) < end + 1:
            return out, buf
        out.append(json.loads(buf[colon + 1 : end]))
        buf = buf[end + 1 :]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("command")
    ap.add_argument("params", nargs="?", default="")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--wait", help="event type to wait for, e.g. CALL_ESTABLISHED")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)

    deadline = time.monotonic() + args.timeout
    with socket.create_connection((args.host, args.port), timeout=args.timeout) as s:
        s.sendall(netstring({"command": args.command, "params": args.params, "token": "t1"}))
        buf = b""
        got_response = False
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            msgs, buf = read_netstrings(buf)
            for m in msgs:
                print(json.dumps(m), flush=True)
                if m.get("response"):
                    got_response = True
                    if not m.get("ok", False):
                        return 1
                if args.wait and m.get("event") and m.get("type") == args.wait:
                    return 0
            if got_response and not args.wait:
                return 0
    print("baresip_ctrl: timed out after %.1f s" % args.timeout, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
