// Conformance test of the built default dialplan components (JS and Python):
// runs each .wasm through jco transpile in Node and compares route() and
// route-message() with the expected actions, field by field, and checks
// that neither exports the optional outbound hook. Values are in jco's host-side representation (the same one the
// guest's JS uses): variants {tag, val}, enums as kebab-case strings,
// option none as undefined.
//
//   npm test      (node --test test/, after scripts/build-{js,python}-guest.sh)
//
// DIALPLAN_COMPONENTS=a.wasm:b.wasm overrides the components tested; by
// default build/components/default_dialplan_{js,py}.wasm, each skipped if
// it was not built.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { transpile } from '@bytecodealliance/jco';

// The Python component uses extended constant expressions, which Node 20's
// V8 has only behind a flag (later versions enable it by default).
setFlagsFromString('--experimental-wasm-extended-const');

const here = dirname(fileURLToPath(import.meta.url));
const guest = resolve(here, '..');
const repo = resolve(guest, '../..');

const components = process.env.DIALPLAN_COMPONENTS
  ? process.env.DIALPLAN_COMPONENTS.split(':').filter(Boolean)
  : ['js', 'py'].map((l) => join(repo, 'build/components', `default_dialplan_${l}.wasm`));

// Routing may read channel variables, then tenant or switch-wide ones
// (none here), and must call nothing else.
const HOST_STUB = `
let vars = [];
export const setVariables = (v) => { vars = v; };
export const channelVariable = (name) => { const f = vars.find((v) => v.name === name); return f === undefined ? undefined : f.value; };
export const channelVariables = () => vars;
export const hostCalls = [];
const called = (name) => (...args) => { hostCalls.push([name, ...args]); throw new Error('host.' + name + ' called'); };
export const log = (...args) => { hostCalls.push(['log', ...args]); };
export const registrations = called('registrations');
export const lookupUser = called('lookupUser');
export const groupMembers = called('groupMembers');
export const globalVariable = (name) => undefined;
`;

async function load(wasmPath) {
  const dir = await mkdtemp(join(tmpdir(), 'dialtone-conformance-'));
  const { files } = await transpile(await readFile(wasmPath), {
    name: 'dialplan',
    map: { 'dialtone:switch/host': './host.js' },
  });
  for (const [name, bytes] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), bytes);
  }
  await writeFile(join(dir, 'host.js'), HOST_STUB);
  // Let the transpiled module resolve the WASI shim from guests/js.
  await symlink(join(guest, 'node_modules'), join(dir, 'node_modules'), 'dir');
  const mod = await import(pathToFileURL(join(dir, 'dialplan.js')).href);
  const host = await import(pathToFileURL(join(dir, 'host.js')).href);
  return { router: mod.router, outbound: mod.outbound, host, dir };
}

const TENANT = 'example.com';
const VARS = Symbol('variables');
function channel(destination, context = 'default', variables = []) {
  return {
    uuid: '00000000-0000-4000-8000-000000000001',
    direction: 'inbound',
    endpoint: 'sofia',
    profile: 'internal',
    tenant: TENANT,
    context,
    callerIdName: 'Alice',
    callerIdNumber: '1001',
    destination,
    networkAddr: '192.0.2.7:5060',
    // Not part of the record: handed to the host stub before routing.
    [VARS]: variables.map(([name, value]) => ({ name, value })),
  };
}
const set = (name, value) => ({ tag: 'set', val: { name, value } });
const hangup = (cause) => ({ tag: 'hangup', val: cause });
const ANSWER = { tag: 'answer' };
const UNALLOCATED = [hangup('unallocated-number')];
const TONES =
  'tone_stream://v=-12;L=1000;%(400,0,523.25);%(400,0,659.25);%(400,0,783.99);%(400,0,1046.5)';
const extension = (ext) => [
  set('call_timeout', '30'),
  set('hangup_after_bridge', 'true'),
  set('dialed_extension', ext),
  { tag: 'bridge', val: `user/${ext}@${TENANT}` },
  hangup('no-answer'),
];
const direct = (ext) => [
  set('call_timeout', '20'),
  { tag: 'bridge', val: `\${sofia_contact(*/${ext}@${TENANT})}` },
  hangup('user-not-registered'),
];
const COLLECT = [
  ANSWER,
  {
    tag: 'collect',
    val: {
      prompt: 'tone_stream://%(200,0,1000)',
      variable: 'ivr_choice',
      minDigits: 1,
      maxDigits: 1,
      timeoutMs: 5000,
      terminators: '#',
    },
  },
];
const transfer = (ext) => [{ tag: 'transfer', val: { extension: ext, context: undefined } }];

// [name, channel, expected actions]
const ROUTES = [
  ['1000 default', channel('1000'), extension('1000')],
  ['1009 default', channel('1009'), extension('1009')],
  ['1010 default', channel('1010'), extension('1010')],
  ['1019 public (any context)', channel('1019', 'public'), extension('1019')],
  ['1005 other context', channel('1005', 'features'), extension('1005')],
  ['1020', channel('1020'), UNALLOCATED],
  ['0999', channel('0999'), UNALLOCATED],
  ['100', channel('100'), UNALLOCATED],
  ['10000', channel('10000'), UNALLOCATED],
  ['1000 + newline', channel('1000\n'), UNALLOCATED],
  ['space + 1000', channel(' 1000'), UNALLOCATED],
  ['empty destination', channel(''), UNALLOCATED],
  ['9196 public', channel('9196', 'public'), UNALLOCATED],
  ['9196 default', channel('9196'), [ANSWER, { tag: 'echo' }]],
  ['9664 default', channel('9664'), [ANSWER, { tag: 'playback', val: TONES }]],
  ['9664 public', channel('9664', 'public'), UNALLOCATED],
  ['*91000', channel('*91000'), direct('1000')],
  ['*91019', channel('*91019'), direct('1019')],
  ['*91020', channel('*91020'), UNALLOCATED],
  ['*9100', channel('*9100'), UNALLOCATED],
  ['*91000 public', channel('*91000', 'public'), UNALLOCATED],
  ['91000', channel('91000'), UNALLOCATED],
  ['5000 first pass', channel('5000'), COLLECT],
  ['5000 other variables only', channel('5000', 'default', [['foo', '1']]), COLLECT],
  ['5000 choice 1', channel('5000', 'default', [['ivr_choice', '1']]), transfer('9196')],
  ['5000 choice 2', channel('5000', 'default', [['ivr_choice', '2']]), transfer('9664')],
  ['5000 choice 3', channel('5000', 'default', [['ivr_choice', '3']]), UNALLOCATED],
  ['5000 choice empty (timeout)', channel('5000', 'default', [['ivr_choice', '']]), UNALLOCATED],
  ['5000 choice 12', channel('5000', 'default', [['ivr_choice', '12']]), UNALLOCATED],
  ['5000 variable name is case-sensitive', channel('5000', 'default', [['IVR_CHOICE', '1']]), COLLECT],
  ['5000 duplicate variable: first wins', channel('5000', 'default', [['ivr_choice', '2'], ['ivr_choice', '1']]), transfer('9664')],
  ['5000 public', channel('5000', 'public', [['ivr_choice', '1']]), UNALLOCATED],
  ['8084 default', channel('8084'), [{ tag: 'socket', val: { address: '127.0.0.1:8084', asyncMode: true, full: true } }]],
  ['8084 socket_address', channel('8084', 'default', [['socket_address', '127.0.0.1:6135']]), [{ tag: 'socket', val: { address: '127.0.0.1:6135', asyncMode: true, full: true } }]],
  ['8084 public', channel('8084', 'public'), UNALLOCATED],
  ['unknown', channel('4444'), UNALLOCATED],
];

const message = (to, tenant = TENANT) => ({
  endpoint: 'sofia',
  profile: 'internal',
  tenant,
  from: `1001@${TENANT}`,
  to,
  contentType: 'text/plain',
  body: 'hi',
  networkAddr: '192.0.2.7:5060',
});
const MESSAGES = [
  ['1001@tenant', message(`1001@${TENANT}`), { tag: 'forward', val: `user/1001@${TENANT}` }],
  ['1019 bare', message('1019'), { tag: 'forward', val: `user/1019@${TENANT}` }],
  ['other domain uses the tenant', message('1002@other.org'), { tag: 'forward', val: `user/1002@${TENANT}` }],
  ['two @', message('1003@a@b'), { tag: 'forward', val: `user/1003@${TENANT}` }],
  ['unknown user', message(`2000@${TENANT}`), { tag: 'reply', val: 'no such user: 2000' }],
  ['1020', message('1020'), { tag: 'reply', val: 'no such user: 1020' }],
  ['empty user', message(`@${TENANT}`), { tag: 'reply', val: 'no such user: ' }],
  ['empty to', message(''), { tag: 'reply', val: 'no such user: ' }],
  ['name', message(`alice@${TENANT}`), { tag: 'reply', val: 'no such user: alice' }],
];

for (const wasm of components) {
  test(`default dialplan ${wasm}`, { skip: !existsSync(wasm) && 'not built' }, async (t) => {
    const { router, outbound, host, dir } = await load(wasm);
    try {
      for (const [name, ch, want] of ROUTES) {
        await t.test(`route ${name}`, () => {
          host.setVariables(ch[VARS]);
          assert.deepStrictEqual(router.route(ch), want);
        });
      }
      await t.test('no outbound hook (the switch never asks about outbound legs)', () => {
        assert.equal(outbound, undefined);
        assert.equal(router.routeOutbound, undefined);
        assert.deepStrictEqual(Object.keys(router).sort(), ['route', 'routeMessage']);
      });
      for (const [name, msg, want] of MESSAGES) {
        await t.test(`route-message ${name}`, () => {
          assert.deepStrictEqual(router.routeMessage(msg), want);
        });
      }
      await t.test('no host call', () => {
        assert.deepStrictEqual(host.hostCalls, []);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
