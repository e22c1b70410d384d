// Helpers shared by the modesl scripts: JSON-line output, a hard timeout,
// failing loudly, and waiting for events that may already have arrived.
//
// Every script prints one JSON object per line on stdout and ends with
// {"done":true} and exit code 0, or {"error":"..."} on stdout and stderr and
// exit code 1 (2 when its hard timeout fires).
'use strict';

let esl;
try {
    esl = require('modesl');
} catch (e) {
    process.stderr.write('modesl is not installed in tests/esl/node_modules: run scripts/install-esl-clients.sh (' + e.message + ')\n');
    process.exit(3);
}

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(msg) {
    emit({ error: msg });
    process.stderr.write('modesl script failed: ' + msg + '\n');
    process.exit(1);
}

// Kills the script after `ms` whatever it is waiting for.
function hardTimeout(ms, what) {
    setTimeout(() => {
        emit({ error: 'timeout after ' + ms + ' ms: ' + what() });
        process.stderr.write('modesl script timed out after ' + ms + ' ms: ' + what() + '\n');
        process.exit(2);
    }, ms);
}

function args() {
    const out = {};
    const a = process.argv.slice(2);
    for (let i = 0; i < a.length; i++) {
        if (!a[i].startsWith('--')) fail('unexpected argument ' + a[i]);
        const k = a[i].slice(2);
        const v = a[i + 1];
        if (v === undefined || v.startsWith('--')) {
            out[k] = true;
        } else {
            out[k] = v;
            i++;
        }
    }
    return out;
}

// Every event frame modesl parses (text/event-plain or text/event-json),
// kept so a waiter that starts late still finds it.
class Events {
    constructor(conn) {
        this.all = [];
        this.waiters = [];
        conn.on('esl::event::**', (ev, headers) => {
            const ct = headers && headers['Content-Type'];
            if (!ct || !ct.startsWith('text/event-')) return;
            this.all.push({ ev, ct });
            this.waiters = this.waiters.filter((w) => {
                if (w.pred(ev)) {
                    w.resolve(ev);
                    return false;
                }
                return true;
            });
        });
    }

    // The first event (already received or still to come) matching pred.
    wait(pred) {
        const hit = this.all.find((e) => pred(e.ev));
        if (hit) return Promise.resolve(hit.ev);
        return new Promise((resolve) => this.waiters.push({ pred, resolve }));
    }

    named(name, uuid) {
        return this.wait((ev) => ev.getHeader('Event-Name') === name
            && (uuid === undefined || ev.getHeader('Unique-ID') === uuid));
    }
}

function summary(ev) {
    return {
        event: ev.getHeader('Event-Name'),
        uuid: ev.getHeader('Unique-ID'),
        job: ev.getHeader('Job-UUID'),
        destination: ev.getHeader('Caller-Destination-Number'),
        body: ev.getBody() || null,
    };
}

// Connects and authenticates; resolves with the connection.
function connect(host, port, password) {
    return new Promise((resolve, reject) => {
        const conn = new esl.Connection(host, Number(port), password);
        conn.on('error', (e) => reject(new Error('modesl error: ' + (e && e.message ? e.message : e))));
        conn.on('esl::event::auth::fail', (ev) => reject(new Error('authentication failed: ' + ev.getHeader('Reply-Text'))));
        conn.once('esl::ready', () => resolve(conn));
    });
}

// modesl's api() as a promise of the response body.
function api(conn, cmd, arg) {
    return new Promise((resolve) => conn.api(cmd, arg || '', (ev) => resolve(ev.getBody())));
}

// A command and its command/reply's Reply-Text.
function sendRecv(conn, line) {
    return new Promise((resolve) => conn.sendRecv(line, (ev) => resolve(ev.getHeader('Reply-Text'))));
}

module.exports = { esl, emit, fail, hardTimeout, args, Events, summary, connect, api, sendRecv };
