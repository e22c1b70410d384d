// Dialtone default dialplan, JavaScript edition.
//
// Implements world `dialtone:switch/dialplan@0.1.0`: exports the `router`
// interface (route, route-message; no outbound hook, so the switch never
// asks it about outbound legs). It must behave exactly
// like the Rust and Python default dialplans (same actions, same order, same
// fields). Its only host call is channel-variable("ivr_choice"), for 5000.
//
// Binding conventions (componentize-js / jco):
//   - the exported interface `router` is the exported object `router`, its
//     functions in lowerCamelCase (route-message -> routeMessage);
//   - records are plain objects with lowerCamelCase fields
//     (caller-id-name -> callerIdName, min-digits -> minDigits);
//   - variants are `{ tag: 'case-name', val: payload }` (no `val` for a case
//     without payload), tags spelled as in WIT (kebab-case);
//   - enums are their WIT case names as strings ('unallocated-number');
//   - option<T> is `undefined` for none and the bare value for some.

import { channelVariable, globalVariable } from 'dialtone:switch/host@0.1.0';

// 1000..1019
const EXTENSION = /^10(0[0-9]|1[0-9])$/;
// *9 followed by 1000..1019: call the registered contacts directly.
const ANNOUNCED = /^\*7(10(0[0-9]|1[0-9]))$/;
const DIRECT_CONTACT = /^\*9(10(0[0-9]|1[0-9]))$/;

const TONES =
  'tone_stream://v=-12;L=1000;%(400,0,523.25);%(400,0,659.25);%(400,0,783.99);%(400,0,1046.5)';
const UK_RING = 'tone_stream://%(400,200,400,450);%(400,2000,400,450)';
const IVR_PROMPT = 'tone_stream://%(200,0,1000)';
const IVR_VARIABLE = 'ivr_choice';

const set = (name, value) => ({ tag: 'set', val: { name, value } });
const hangup = (cause) => ({ tag: 'hangup', val: cause });
const answer = () => ({ tag: 'answer' });

// The channel's variables are read on demand from the host (the snapshot
// taken for this invocation); undefined if unset.
// A channel variable, else a tenant or switch-wide one.
const variable = (name) => channelVariable(name) ?? globalVariable(name);

function route(channel) {
  const dest = channel.destination;
  const ctx = channel.context;
  const tenant = channel.tenant;

  // Local extensions, reachable from any context.
  if (EXTENSION.test(dest)) {
    return [
      set('call_timeout', '30'),
      set('hangup_after_bridge', 'true'),
      set('dialed_extension', dest),
      { tag: 'bridge', val: `user/${dest}@${tenant}` },
      hangup('no-answer'),
    ];
  }

  // The public context reaches nothing else.
  if (ctx === 'public') {
    return [hangup('unallocated-number')];
  }

  if (dest === '9196') {
    return [answer(), { tag: 'echo' }];
  }

  if (dest === '9178') {
    return [
      answer(),
      { tag: 'record', val: { path: '9178-${uuid}.wav', limitMs: 60000, legs: 'both' } },
      { tag: 'echo' },
    ];
  }

  if (dest === '9664') {
    return [answer(), { tag: 'playback', val: TONES }];
  }

  const direct = DIRECT_CONTACT.exec(dest);
  if (direct !== null) {
    const ext = direct[1];
    return [
      set('call_timeout', '20'),
      { tag: 'bridge', val: `\${sofia_contact(*/${ext}@${tenant})}` },
      hangup('user-not-registered'),
    ];
  }

  // An announcement to the callee before the bridge.
  const announced = ANNOUNCED.exec(dest);
  if (announced) {
    const ext = announced[1];
    return [
      set('call_timeout', '30'),
      set('hangup_after_bridge', 'true'),
      { tag: 'bridge', val: `[execute_on_answer=playback\\ announce.wav]user/${ext}@${tenant}` },
      hangup('no-answer'),
    ];
  }

  if (dest === '8084') {
    const address = variable('socket_address') ?? '127.0.0.1:8084';
    return [{ tag: 'socket', val: { address, asyncMode: true, full: true } }];
  }

  if (dest === '9181') {
    return [{ tag: 'pre-answer' }, { tag: 'playback', val: UK_RING }, hangup('no-answer')];
  }

  if (dest === '5000') {
    const choice = variable(IVR_VARIABLE);
    if (choice === undefined) {
      return [
        answer(),
        {
          tag: 'collect',
          val: {
            prompt: IVR_PROMPT,
            variable: IVR_VARIABLE,
            minDigits: 1,
            maxDigits: 1,
            timeoutMs: 5000,
            terminators: '#',
          },
        },
      ];
    }
    if (choice === '1') {
      return [{ tag: 'transfer', val: { extension: '9196', context: undefined } }];
    }
    if (choice === '2') {
      return [{ tag: 'transfer', val: { extension: '9664', context: undefined } }];
    }
    return [hangup('unallocated-number')];
  }

  return [hangup('unallocated-number')];
}

function routeMessage(message) {
  const to = message.to;
  const at = to.indexOf('@');
  const user = at === -1 ? to : to.slice(0, at);
  if (EXTENSION.test(user)) {
    return { tag: 'forward', val: `user/${user}@${message.tenant}` };
  }
  return { tag: 'reply', val: `no such user: ${user}` };
}

export const router = { route, routeMessage };
