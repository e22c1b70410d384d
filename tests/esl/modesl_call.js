#!/usr/bin/env node
// Test 1 with modesl: authenticate, `api status`, subscribe to every event
// (plain), `bgapi originate` to a SIP peer that answers, then BACKGROUND_JOB,
// CHANNEL_CREATE and CHANNEL_ANSWER for the new channel, `api uuid_kill`,
// CHANNEL_HANGUP_COMPLETE.
//
//   node modesl_call.js --port ESL_PORT --target 127.0.0.1:SIPP_PORT [--password ClueCon] [--timeout-ms 40000]
'use strict';
const { emit, fail, hardTimeout, args, Events, summary, connect, api, sendRecv } = require('./lib');

const a = args();
const port = a.port || fail('--port is required');
const target = a.target || fail('--target is required');
let stage = 'connecting';
hardTimeout(Number(a['timeout-ms'] || 40000), () => stage);

(async () => {
    const conn = await connect('127.0.0.1', port, a.password || 'ClueCon');
    conn.on('error', (e) => fail('modesl error while ' + stage + ': ' + (e && e.message)));
    conn.on('esl::end', () => { if (stage !== 'done') fail('connection closed while ' + stage); });
    emit({ step: 'auth', ok: true });

    stage = 'api status';
    emit({ step: 'status', body: await api(conn, 'status') });

    stage = 'subscribing';
    const events = new Events(conn);
    emit({ step: 'event', reply: await sendRecv(conn, 'event plain ALL') });

    stage = 'bgapi originate';
    const job = await new Promise((resolve) => {
        conn.bgapi('originate', 'sofia/internal/9196@' + target + ' 9196', (ev) => resolve(ev));
    });
    emit(Object.assign({ step: 'background_job' }, summary(job)));
    const body = job.getBody() || '';
    const m = /^\+OK (\S+)\s*$/.exec(body);
    if (!m) fail('BACKGROUND_JOB body is not "+OK <uuid>": ' + JSON.stringify(body));
    const uuid = m[1];

    stage = 'waiting for CHANNEL_CREATE of ' + uuid;
    emit(Object.assign({ step: 'create' }, summary(await events.named('CHANNEL_CREATE', uuid))));
    stage = 'waiting for CHANNEL_ANSWER of ' + uuid;
    emit(Object.assign({ step: 'answer' }, summary(await events.named('CHANNEL_ANSWER', uuid))));

    stage = 'api uuid_kill';
    emit({ step: 'kill', body: await api(conn, 'uuid_kill', uuid) });
    stage = 'waiting for CHANNEL_HANGUP_COMPLETE of ' + uuid;
    const hc = await events.named('CHANNEL_HANGUP_COMPLETE', uuid);
    emit(Object.assign({ step: 'hangup_complete', cause: hc.getHeader('Hangup-Cause') }, summary(hc)));

    stage = 'done';
    emit({ done: true, events: events.all.length });
    conn.disconnect();
    process.exit(0);
})().catch((e) => fail('while ' + stage + ': ' + (e && e.message ? e.message : e)));
