// Outbound socket mode with modesl's esl.Server: the switch's `socket`
// action connects here; this application answers the call, plays a tone,
// reads a variable and hangs up. One JSON line per step on stdout; exits 0
// when the switch closes the connection after the hangup, 1 on timeout.
//
//   node modesl_outbound.js PORT [TIMEOUT_MS]
'use strict';
const esl = require('modesl');

const port = Number(process.argv[2]);
const timeoutMs = Number(process.argv[3] || 20000);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

setTimeout(() => { out({ step: 'timeout' }); process.exit(1); }, timeoutMs).unref();

const server = new esl.Server({ host: '127.0.0.1', port, myevents: true }, () => out({ step: 'listening', port }));
server.on('connection::ready', (conn) => {
  const info = conn.getInfo();
  const uuid = info.getHeader('Unique-ID');
  out({
    step: 'ready',
    uuid,
    destination: info.getHeader('Caller-Destination-Number'),
    event: info.getHeader('Event-Name'),
    direction: info.getHeader('Call-Direction'),
  });
  conn.execute('answer', '', (ev) => {
    out({ step: 'answered', app: ev.getHeader('Application'), uuid: ev.getHeader('Unique-ID'), state: ev.getHeader('Channel-Call-State') });
    conn.execute('playback', 'tone_stream://%(1000,0,800)', (ev2) => {
      out({ step: 'played', app: ev2.getHeader('Application'), data: ev2.getHeader('Application-Data'), uuid: ev2.getHeader('Unique-ID') });
      conn.execute('set', 'socket_test=done', () => {
        conn.sendRecv('getvar socket_test', (reply) => {
          out({ step: 'getvar', value: reply.getHeader('Reply-Text') });
          conn.execute('hangup', 'NORMAL_CLEARING');
        });
      });
    });
  });
  conn.on('esl::end', () => {
    out({ step: 'end' });
    setTimeout(() => process.exit(0), 100);
  });
});
