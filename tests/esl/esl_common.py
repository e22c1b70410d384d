"""Helpers shared by the genesis scripts: JSON-line output, a hard timeout,
failing loudly, and waiting for events that may already have arrived.

Every script prints one JSON object per line on stdout and ends with
{"done": true} and exit code 0, or {"error": "..."} on stdout and stderr and
exit code 1 (2 when its hard timeout fires, 3 when genesis is missing).
"""

import asyncio
import json
import logging
import os
import sys
import threading

os.environ.setdefault("GENESIS_LOG_LEVEL", "WARNING")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

try:
    import genesis  # noqa: F401
    from genesis import Inbound  # noqa: F401
except ImportError as e:  # pragma: no cover
    sys.stderr.write(
        f"genesis is not installed in this Python ({sys.executable}): "
        f"run scripts/install-esl-clients.sh ({e})\n"
    )
    sys.exit(3)

# genesis logs through rich to stdout; stdout is for JSON lines only.
for name in ("genesis.observability.logger", "genesis"):
    lg = logging.getLogger(name)
    for h in lg.handlers[:]:
        lg.removeHandler(h)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("genesis %(levelname)s: %(message)s"))
    lg.addHandler(h)

STAGE = {"now": "starting"}


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def fail(msg, code=1):
    emit({"error": msg})
    sys.stderr.write(f"genesis script failed: {msg}\n")
    sys.stderr.flush()
    os._exit(code)


def stage(s):
    STAGE["now"] = s


def hard_timeout(seconds):
    """Ends the process after `seconds` whatever it is waiting for."""

    def fire():
        fail(f"timeout after {seconds} s while {STAGE['now']}", 2)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()


def header(ev, name):
    v = ev.get(name)
    if isinstance(v, list):
        return v[0] if v else None
    return v


def summary(ev):
    return {
        "event": header(ev, "Event-Name"),
        "uuid": header(ev, "Unique-ID"),
        "job": header(ev, "Job-UUID"),
        "destination": header(ev, "Caller-Destination-Number"),
        "body": ev.body,
    }


class Events:
    """Every event the connection delivers (handler on "*"), kept so a
    waiter that starts late still finds it."""

    def __init__(self, client):
        self.all = []
        self._changed = asyncio.Event()
        client.on("*", self._on)

    async def _on(self, ev):
        self.all.append(ev)
        self._changed.set()

    async def wait(self, pred):
        seen = 0
        while True:
            for ev in self.all[seen:]:
                if pred(ev):
                    return ev
            seen = len(self.all)
            self._changed.clear()
            await self._changed.wait()

    async def named(self, name, uuid=None):
        return await self.wait(
            lambda ev: header(ev, "Event-Name") == name
            and (uuid is None or header(ev, "Unique-ID") == uuid)
        )


async def api(client, line):
    """`api LINE`: the api/response body."""
    r = await client.send(f"api {line}")
    return r.body or ""


async def reply(client, line):
    """A command's Reply-Text."""
    r = await client.send(line)
    return header(r, "Reply-Text")


def run(main, seconds):
    hard_timeout(seconds)
    try:
        asyncio.run(main())
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001
        fail(f"while {STAGE['now']}: {type(e).__name__}: {e}")
    sys.stdout.flush()
    os._exit(0)
