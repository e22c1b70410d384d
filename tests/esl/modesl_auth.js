#!/usr/bin/env node
// modesl logging in: with the right password it runs `api status` and
// prints the body; with --expect-fail it expects the switch to refuse the
// password (auth::fail with its Reply-Text, then text/disconnect-notice,
// then the end of the connection) and prints what it saw.
//
//   node modesl_auth.js --port ESL_PORT [--password ClueCon] [--expect-fail] [--timeout-ms 20000]
'use strict';
const { esl, emit, fail, hardTimeout, args, api } = require('./lib');

const a = args();
const port = a.port || fail('--port is required');
const password = a.password || 'ClueCon';
let stage = 'connecting';
hardTimeout(Number(a['timeout-ms'] || 20000), () => stage);

const conn = new esl.Connection('127.0.0.1', Number(port), password);
conn.on('error', (e) => {
    // A reset after the switch's goodbye is the end of the connection too.
    if (a['expect-fail'] && stage === 'waiting for the end of the connection') return;
    fail('modesl error while ' + stage + ': ' + (e && e.message));
});

if (a['expect-fail']) {
    const seen = { step: 'refused' };
    conn.on('esl::event::auth::success', () => fail('the switch accepted password ' + JSON.stringify(password)));
    conn.on('esl::event::auth::fail', (ev) => {
        seen.reply = ev.getHeader('Reply-Text');
        stage = 'waiting for text/disconnect-notice';
    });
    conn.on('esl::event::disconnect::notice', (ev) => {
        seen.disconnect_notice = true;
        seen.notice_body = ev.getBody();
        stage = 'waiting for the end of the connection';
    });
    conn.on('esl::end', () => {
        seen.closed = true;
        emit(seen);
        emit({ done: true });
        process.exit(0);
    });
} else {
    conn.on('esl::event::auth::fail', (ev) => fail('authentication failed: ' + ev.getHeader('Reply-Text')));
    conn.on('esl::ready', async () => {
        emit({ step: 'auth', ok: true });
        stage = 'api status';
        emit({ step: 'status', body: await api(conn, 'status') });
        stage = 'done';
        emit({ done: true });
        conn.disconnect();
        process.exit(0);
    });
}
