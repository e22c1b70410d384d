"""Dialtone default dialplan, Python edition.

Implements world ``dialtone:switch/dialplan@0.1.0``: exports the ``router``
interface (route, route-message; no outbound hook, so the switch never asks
it about outbound legs). It must behave exactly like
the Rust and JavaScript default dialplans (same actions, same order, same
fields). Its only host call is channel-variable("ivr_choice"), for 5000.

Binding conventions (componentize-py, generated package ``wit_world``):
  - the exported interface ``router`` is the class ``Router`` of this module,
    subclassing ``wit_world.exports.Router``; functions in snake_case;
  - records are dataclasses with snake_case fields (``caller_id_name``;
    ``%from`` becomes ``from_``);
  - a variant case is a dataclass ``<Variant>_<Case>`` in UpperCamelCase with
    its payload in ``.value`` (``types.Action_Set(types.Variable(n, v))``),
    no field for a case without payload (``types.Action_Answer()``);
  - enums are ``enum.Enum`` classes with UPPER_SNAKE members
    (``types.HangupCause.UNALLOCATED_NUMBER``);
  - option<T> is ``None`` or the bare value.
"""

import re
from typing import List, Optional

from wit_world import exports
from wit_world.imports import host, types

# 1000..1019. fullmatch, not match + "$": "$" would accept a trailing newline.
EXTENSION = re.compile(r"10(0[0-9]|1[0-9])")
# One cadence of UK ringback, the early media of 9181.
UK_RING = "tone_stream://%(400,200,400,450);%(400,2000,400,450)"
# *7 followed by 1000..1019: announce.wav to the callee, then the bridge.
ANNOUNCED = re.compile(r"\*7(10(0[0-9]|1[0-9]))")
# *9 followed by 1000..1019: call the registered contacts directly.
DIRECT_CONTACT = re.compile(r"\*9(10(0[0-9]|1[0-9]))")

TONES = (
    "tone_stream://v=-12;L=1000;%(400,0,523.25);%(400,0,659.25);"
    "%(400,0,783.99);%(400,0,1046.5)"
)
IVR_PROMPT = "tone_stream://%(200,0,1000)"
IVR_VARIABLE = "ivr_choice"


def _set(name: str, value: str) -> types.Action:
    return types.Action_Set(types.Variable(name=name, value=value))


def _hangup(cause: types.HangupCause) -> types.Action:
    return types.Action_Hangup(cause)


def _variable(name: str) -> Optional[str]:
    """A channel variable of the snapshot being routed (read on demand from
    the host), None if unset."""
    value = host.channel_variable(name)
    if value is None:
        # A tenant or switch-wide variable.
        value = host.global_variable(name)
    return value


def route(channel: types.ChannelInfo) -> List[types.Action]:
    dest = channel.destination
    ctx = channel.context
    tenant = channel.tenant

    # Local extensions, reachable from any context.
    if EXTENSION.fullmatch(dest):
        return [
            _set("call_timeout", "30"),
            _set("hangup_after_bridge", "true"),
            _set("dialed_extension", dest),
            types.Action_Bridge(f"user/{dest}@{tenant}"),
            _hangup(types.HangupCause.NO_ANSWER),
        ]

    # The public context reaches nothing else.
    if ctx == "public":
        return [_hangup(types.HangupCause.UNALLOCATED_NUMBER)]

    if dest == "9196":
        return [types.Action_Answer(), types.Action_Echo()]

    if dest == "9178":
        return [
            types.Action_Answer(),
            types.Action_Record(
                types.RecordSpec(
                    path="9178-${uuid}.wav",
                    limit_ms=60000,
                    legs=types.RecordLegs.BOTH,
                )
            ),
            types.Action_Echo(),
        ]

    if dest == "9664":
        return [types.Action_Answer(), types.Action_Playback(TONES)]

    direct = DIRECT_CONTACT.fullmatch(dest)
    if direct is not None:
        ext = direct.group(1)
        return [
            _set("call_timeout", "20"),
            types.Action_Bridge("${sofia_contact(*/" + ext + "@" + tenant + ")}"),
            _hangup(types.HangupCause.USER_NOT_REGISTERED),
        ]

    # An announcement to the callee before the bridge.
    announced = ANNOUNCED.fullmatch(dest)
    if announced:
        ext = announced.group(1)
        return [
            _set("call_timeout", "30"),
            _set("hangup_after_bridge", "true"),
            types.Action_Bridge(f"[execute_on_answer=playback\\ announce.wav]user/{ext}@{tenant}"),
            _hangup(types.HangupCause.NO_ANSWER),
        ]

    if dest == "8084":
        address = _variable("socket_address") or "127.0.0.1:8084"
        return [types.Action_Socket(types.SocketSpec(address=address, async_mode=True, full=True))]

    if dest == "9181":
        return [
            types.Action_PreAnswer(),
            types.Action_Playback(UK_RING),
            _hangup(types.HangupCause.NO_ANSWER),
        ]

    if dest == "5000":
        choice = _variable(IVR_VARIABLE)
        if choice is None:
            return [
                types.Action_Answer(),
                types.Action_Collect(
                    types.CollectSpec(
                        prompt=IVR_PROMPT,
                        variable=IVR_VARIABLE,
                        min_digits=1,
                        max_digits=1,
                        timeout_ms=5000,
                        terminators="#",
                    )
                ),
            ]
        if choice == "1":
            return [types.Action_Transfer(types.TransferTarget(extension="9196", context=None))]
        if choice == "2":
            return [types.Action_Transfer(types.TransferTarget(extension="9664", context=None))]
        return [_hangup(types.HangupCause.UNALLOCATED_NUMBER)]

    return [_hangup(types.HangupCause.UNALLOCATED_NUMBER)]


def route_message(message: types.TextMessage) -> types.MessageDecision:
    user = message.to.split("@", 1)[0]
    if EXTENSION.fullmatch(user):
        return types.MessageDecision_Forward(f"user/{user}@{message.tenant}")
    return types.MessageDecision_Reply(f"no such user: {user}")


class Router(exports.Router):
    def route(self, channel: types.ChannelInfo) -> List[types.Action]:
        return route(channel)

    def route_message(self, message: types.TextMessage) -> types.MessageDecision:
        return route_message(message)
