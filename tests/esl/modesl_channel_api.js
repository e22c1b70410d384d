#!/usr/bin/env node
// Test 6 with modesl: on a live call (originated with `api originate` to a
// SIP peer that answers) `show channels as json` (raw and through modesl's
// show() helper), `uuid_setvar`/`uuid_getvar`, `uuid_dump` (plain and
// json), `uuid_transfer` to 9664 (seen in the events and in uuid_dump),
// `sofia status`, then `uuid_kill` and CHANNEL_HANGUP_COMPLETE.
//
//   node modesl_channel_api.js --port ESL_PORT --target 127.0.0.1:SIPP_PORT [--timeout-ms 40000]
'use strict';
const { emit, fail, hardTimeout, args, Events, summary, connect, api, sendRecv } = require('./lib');

const a = args();
const port = a.port || fail('--port is required');
const target = a.target || fail('--target is required');
let stage = 'connecting';
hardTimeout(Number(a['timeout-ms'] || 40000), () => stage);

function parseJson(what, text) {
    try {
        return JSON.parse(text);
    } catch (e) {
        fail(what + ' is not JSON (' + e.message + '): ' + JSON.stringify(text));
    }
}

(async () => {
    const conn = await connect('127.0.0.1', port, a.password || 'ClueCon');
    conn.on('error', (e) => fail('modesl error while ' + stage + ': ' + (e && e.message)));
    conn.on('esl::end', () => { if (stage !== 'done') fail('connection closed while ' + stage); });

    stage = 'subscribing (json, modesl\'s native format)';
    const events = new Events(conn);
    emit({ step: 'event', reply: await sendRecv(conn, 'event json ALL') });

    stage = 'api originate';
    const orig = await api(conn, 'originate', 'sofia/internal/9196@' + target + ' 9196');
    emit({ step: 'originate', body: orig });
    const m = /^\+OK (\S+)\s*$/.exec(orig || '');
    if (!m) fail('originate did not answer "+OK <uuid>": ' + JSON.stringify(orig));
    const uuid = m[1];
    stage = 'waiting for CHANNEL_ANSWER of ' + uuid;
    await events.named('CHANNEL_ANSWER', uuid);

    stage = 'api show channels as json';
    const raw = await api(conn, 'show', 'channels as json');
    const shown = parseJson('show channels as json', raw);
    emit({
        step: 'show_channels',
        row_count: shown.row_count,
        uuids: (shown.rows || []).map((r) => r.uuid),
        row: (shown.rows || []).find((r) => r.uuid === uuid) || null,
    });

    stage = 'modesl show(channels, json)';
    const helper = await new Promise((resolve) => conn.show('channels', 'json', (err, parsed) => {
        if (err) fail('modesl show() failed: ' + err.message);
        resolve(parsed);
    }));
    emit({ step: 'show_helper', row_count: helper.row_count, uuids: helper.rows.map((r) => r.uuid) });

    stage = 'uuid_setvar / uuid_getvar';
    emit({ step: 'getvar_unset', body: await api(conn, 'uuid_getvar', uuid + ' esl_test_var') });
    emit({ step: 'setvar', body: await api(conn, 'uuid_setvar', uuid + ' esl_test_var hello modesl') });
    emit({ step: 'getvar', body: await api(conn, 'uuid_getvar', uuid + ' esl_test_var') });
    emit({ step: 'getvar_missing_channel', body: await api(conn, 'uuid_getvar', '00000000-0000-0000-0000-000000000000 esl_test_var') });

    stage = 'uuid_dump';
    const dump = await api(conn, 'uuid_dump', uuid);
    const fields = {};
    for (const line of dump.split('\n')) {
        const i = line.indexOf(': ');
        if (i <= 0) continue;
        // FreeSWITCH url-encodes uuid_dump's values; decoding a plain one
        // changes nothing (unless it holds a '%').
        let v = line.slice(i + 2);
        try { v = decodeURIComponent(v); } catch (e) { /* keep it as sent */ }
        fields[line.slice(0, i)] = v;
    }
    emit({ step: 'dump', fields });
    const dumpJson = parseJson('uuid_dump json', await api(conn, 'uuid_dump', uuid + ' json'));
    emit({ step: 'dump_json', fields: dumpJson });

    stage = 'uuid_transfer to 9664';
    emit({ step: 'transfer', body: await api(conn, 'uuid_transfer', uuid + ' 9664') });
    stage = 'waiting for CHANNEL_EXECUTE of ' + uuid + ' with Caller-Destination-Number 9664';
    const exec = await events.wait((ev) => ev.getHeader('Event-Name') === 'CHANNEL_EXECUTE'
        && ev.getHeader('Unique-ID') === uuid
        && ev.getHeader('Caller-Destination-Number') === '9664');
    emit(Object.assign({ step: 'transferred', application: exec.getHeader('Application') }, summary(exec)));
    const after = parseJson('uuid_dump json after the transfer', await api(conn, 'uuid_dump', uuid + ' json'));
    emit({ step: 'dump_after_transfer', destination: after['Caller-Destination-Number'] });

    stage = 'sofia status';
    emit({ step: 'sofia_status', body: await api(conn, 'sofia', 'status') });

    stage = 'api uuid_kill';
    emit({ step: 'kill', body: await api(conn, 'uuid_kill', uuid) });
    stage = 'waiting for CHANNEL_HANGUP_COMPLETE of ' + uuid;
    const hc = await events.named('CHANNEL_HANGUP_COMPLETE', uuid);
    emit(Object.assign({ step: 'hangup_complete', cause: hc.getHeader('Hangup-Cause') }, summary(hc)));
    emit({ step: 'kill_again', body: await api(conn, 'uuid_kill', uuid) });

    stage = 'done';
    emit({ done: true, events: events.all.length });
    conn.disconnect();
    process.exit(0);
})().catch((e) => fail('while ' + stage + ': ' + (e && e.message ? e.message : e)));
