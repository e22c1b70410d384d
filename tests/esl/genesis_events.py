#!/usr/bin/env python3
"""Test 5 with genesis (asyncio Inbound), two connections:

- `watch` subscribes with `event json ALL` and sees everything;
- `filtered` subscribes with `event json ALL`, and after call A is up adds
  `filter Unique-ID <A>`; call B is originated after that, so no event of B
  (nor any other event published after the filter, e.g. a BACKGROUND_JOB)
  may reach it.

Every text/event-json frame must parse as a JSON object with Event-Name.
Also: `bgapi` of an unknown command (BACKGROUND_JOB body), `nixevent`,
`noevents` (twice).

genesis routes handlers by the Event-Name header, which a json event only
has inside its body, so the frames are taken with an event processor (the
hook genesis offers for protocol-level adapters).

    python genesis_events.py --port ESL_PORT --target 127.0.0.1:SIPP_PORT [--timeout 50]
"""

import argparse
import asyncio
import json
import re

from esl_common import Inbound, api, emit, fail, header, reply, run, stage

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--target", required=True)
p.add_argument("--password", default="ClueCon")
p.add_argument("--timeout", type=float, default=50)
a = p.parse_args()


class JsonEvents:
    """The connection's text/event-json frames, each parsed."""

    def __init__(self, client, label):
        self.label = label
        self.all = []
        self.bad = []
        self._changed = asyncio.Event()
        client.event_processors.append(self._take)

    def _take(self, _protocol, ev):
        ct = header(ev, "Content-Type")
        if not (ct or "").startswith("text/event-"):
            return
        if ct != "text/event-json":
            self.bad.append(f"{ct} frame on a json subscription")
        else:
            try:
                obj = json.loads(ev.body or "")
            except ValueError as e:
                self.bad.append(f"not JSON ({e}): {ev.body!r}")
                obj = None
            if obj is not None:
                if not isinstance(obj, dict) or not isinstance(obj.get("Event-Name"), str):
                    self.bad.append(f"no Event-Name: {ev.body!r}")
                else:
                    self.all.append(obj)
        self._changed.set()

    def mark(self):
        return len(self.all)

    async def wait(self, pred, what):
        stage(f"{self.label}: waiting for {what}")
        seen = 0
        while True:
            for ev in self.all[seen:]:
                if pred(ev):
                    return ev
            seen = len(self.all)
            self._changed.clear()
            await self._changed.wait()

    async def named(self, name, uuid):
        return await self.wait(
            lambda e: e.get("Event-Name") == name and e.get("Unique-ID") == uuid,
            f"{name} of {uuid}",
        )


def seq(ev):
    try:
        return int(ev.get("Event-Sequence", "-1"))
    except ValueError:
        return -1


async def originate(client):
    body = await api(client, f"originate sofia/internal/9196@{a.target} 9196")
    m = re.match(r"^\+OK (\S+)\s*$", body)
    if not m:
        fail(f"originate did not answer '+OK <uuid>': {body!r}")
    return m.group(1)


async def main():
    stage("connecting")
    async with Inbound("127.0.0.1", a.port, a.password, timeout=10) as watch, Inbound(
        "127.0.0.1", a.port, a.password, timeout=10
    ) as filtered:
        w = JsonEvents(watch, "watch")
        f = JsonEvents(filtered, "filtered")
        stage("subscribing")
        emit({"step": "event_json", "reply": await reply(watch, "event json ALL")})
        await reply(filtered, "event json ALL")

        stage("bgapi of an unknown command")
        r = await watch.send("bgapi no_such_command_xyz some args")
        job = header(r, "Job-UUID")
        emit({"step": "bgapi_unknown_reply", "reply": header(r, "Reply-Text"), "job": job})
        bg = await w.wait(
            lambda e: e.get("Event-Name") == "BACKGROUND_JOB" and e.get("Job-UUID") == job,
            f"BACKGROUND_JOB {job}",
        )
        emit({"step": "bgapi_unknown", "body": bg.get("_body"), "command": bg.get("Job-Command")})

        stage("originating call A")
        ua = await originate(watch)
        await f.named("CHANNEL_ANSWER", ua)
        emit({"step": "call_a", "uuid": ua})

        stage("filter Unique-ID A")
        emit({"step": "filter", "reply": await reply(filtered, f"filter Unique-ID {ua}")})

        stage("originating call B")
        ub = await originate(watch)
        b_create = await w.named("CHANNEL_CREATE", ub)
        await w.named("CHANNEL_ANSWER", ub)
        emit({"step": "call_b", "uuid": ub, "create_seq": seq(b_create)})
        # Published after the filter, without Unique-ID: must not pass it.
        await reply(filtered, "bgapi status")

        stage("hanging up B, then A")
        emit({"step": "kill_b", "body": await api(watch, f"uuid_kill {ub}")})
        await w.named("CHANNEL_HANGUP_COMPLETE", ub)
        emit({"step": "kill_a", "body": await api(watch, f"uuid_kill {ua}")})
        a_done = await f.named("CHANNEL_HANGUP_COMPLETE", ua)
        await w.named("CHANNEL_HANGUP_COMPLETE", ua)

        # Everything `filtered` got that was published after B's creation
        # (so after the filter was in place), up to A's end.
        late = [e for e in f.all if seq(b_create) <= seq(e) <= seq(a_done)]
        emit(
            {
                "step": "filtered",
                "late_events": [[e.get("Event-Name"), e.get("Unique-ID")] for e in late],
                "b_events": [e.get("Event-Name") for e in f.all if e.get("Unique-ID") == ub],
                "a_events_after_filter": [e.get("Event-Name") for e in late if e.get("Unique-ID") == ua],
                "watch_b_events": [e.get("Event-Name") for e in w.all if e.get("Unique-ID") == ub],
            }
        )

        stage("nixevent / noevents")
        emit({"step": "nixevent", "reply": await reply(filtered, "nixevent CHANNEL_ANSWER")})
        emit({"step": "noevents", "reply": await reply(filtered, "noevents")})
        emit({"step": "noevents_again", "reply": await reply(filtered, "noevents")})

        emit(
            {
                "step": "json",
                "watch_events": len(w.all),
                "filtered_events": len(f.all),
                "bad": w.bad + f.bad,
                "names": sorted({e["Event-Name"] for e in w.all}),
            }
        )
        stage("disconnecting")
        emit({"done": True})


run(main, a.timeout)
