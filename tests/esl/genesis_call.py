#!/usr/bin/env python3
"""Test 2 with genesis (asyncio Inbound): authenticate, `api status`,
subscribe to every event (plain), `bgapi originate` to a SIP peer that
answers, then BACKGROUND_JOB, CHANNEL_CREATE and CHANNEL_ANSWER for the new
channel, `api uuid_kill`, CHANNEL_HANGUP_COMPLETE.

    python genesis_call.py --port ESL_PORT --target 127.0.0.1:SIPP_PORT
        [--password ClueCon] [--timeout 40]
"""

import argparse
import re

from esl_common import Events, Inbound, api, emit, fail, header, reply, run, stage, summary

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--target", required=True)
p.add_argument("--password", default="ClueCon")
p.add_argument("--timeout", type=float, default=40)
a = p.parse_args()


async def main():
    stage("connecting")
    async with Inbound("127.0.0.1", a.port, a.password, timeout=10) as client:
        emit({"step": "auth", "ok": True})
        events = Events(client)

        stage("api status")
        emit({"step": "status", "body": await api(client, "status")})

        stage("subscribing")
        emit({"step": "event", "reply": await reply(client, "event plain ALL")})

        stage("bgapi originate")
        r = await client.send(f"bgapi originate sofia/internal/9196@{a.target} 9196")
        job = header(r, "Job-UUID")
        emit({"step": "bgapi", "reply": header(r, "Reply-Text"), "job": job})
        if not job:
            fail(f"bgapi reply has no Job-UUID: {dict(r)}")

        stage(f"waiting for BACKGROUND_JOB {job}")
        bg = await events.wait(
            lambda ev: header(ev, "Event-Name") == "BACKGROUND_JOB" and header(ev, "Job-UUID") == job
        )
        emit({"step": "background_job", **summary(bg)})
        m = re.match(r"^\+OK (\S+)\s*$", bg.body or "")
        if not m:
            fail(f"BACKGROUND_JOB body is not '+OK <uuid>': {bg.body!r}")
        uuid = m.group(1)

        stage(f"waiting for CHANNEL_CREATE of {uuid}")
        emit({"step": "create", **summary(await events.named("CHANNEL_CREATE", uuid))})
        stage(f"waiting for CHANNEL_ANSWER of {uuid}")
        emit({"step": "answer", **summary(await events.named("CHANNEL_ANSWER", uuid))})

        stage("api uuid_kill")
        emit({"step": "kill", "body": await api(client, f"uuid_kill {uuid}")})
        stage(f"waiting for CHANNEL_HANGUP_COMPLETE of {uuid}")
        hc = await events.named("CHANNEL_HANGUP_COMPLETE", uuid)
        emit({"step": "hangup_complete", "cause": header(hc, "Hangup-Cause"), **summary(hc)})

        stage("disconnecting")
        emit({"done": True, "events": len(events.all)})


run(main, a.timeout)
