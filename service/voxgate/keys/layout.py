"""The shared key pool's Redis layout: key names, the state record, and the Lua
scripts (``lua/*.lua``) that read and write them atomically (see :mod:`voxgate.keys.shared`).

Pure: nothing here talks to Redis. Keys appear only by alias, never the secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from voxgate.keys.pool import KeyState, Transition

PREFIX = "voxgate:pool:"
INSTANCES_KEY = PREFIX + "instances"
STATES_KEY = PREFIX + "states"
STATE_VERSION_KEY = PREFIX + "state_version"
ACTIVE_KEY = PREFIX + "active:{}"
STARTS_KEY = PREFIX + "starts:{}"
#: On a Redis Cluster every pool key carries the hash tag ``{pool}``: each script reads
#: and writes several of them atomically, which a cluster allows within one hash
#: slot only. (The pool is small and written about once per session start and once
#: per replica per heartbeat: one slot carries it easily.)
CLUSTER_PREFIX = "voxgate:{pool}:"


@dataclass(frozen=True, slots=True)
class PoolKeys:
    """The pool's key names: the historical ones on one Redis or Sentinel, hash-tagged
    into one slot on a cluster (:func:`pool_keys`)."""

    prefix: str = PREFIX

    @property
    def instances(self) -> str:
        return self.prefix + "instances"

    @property
    def states(self) -> str:
        return self.prefix + "states"

    @property
    def state_version(self) -> str:
        return self.prefix + "state_version"

    def active(self, alias: str) -> str:
        return f"{self.prefix}active:{alias}"

    def starts(self, alias: str) -> str:
        return f"{self.prefix}starts:{alias}"


def pool_keys(cluster: bool) -> PoolKeys:
    return PoolKeys(CLUSTER_PREFIX if cluster else PREFIX)


def _lua(name: str) -> str:
    return (resources.files("voxgate.keys") / "lua" / f"{name}.lua").read_text()


#: Every script starts with these: Redis's clock as ``now``, then (but SET_STATE) this
#: instance's heartbeat and ``put_mine`` (``lua/clock.lua``, ``lua/alive.lua``).
_CLOCK_MS = _lua("clock")
_ALIVE = _lua("alive")
#: Each script's KEYS and ARGV are described at the top of its file in ``lua/``.
ACQUIRE_LUA = _CLOCK_MS + _ALIVE + _lua("acquire")
HEARTBEAT_LUA = _CLOCK_MS + _ALIVE + _lua("heartbeat")
SET_STATE_LUA = _CLOCK_MS + _lua("set_state")


@dataclass(frozen=True, slots=True)
class SharedState:
    """A key's state as one replica wrote it to Redis."""

    alias: str
    state: KeyState
    reason: str
    by: str
    version: int


def encode_state(transition: Transition, by: str, since: float) -> str:
    return json.dumps(
        {"state": transition.new.value, "reason": transition.reason, "since": since, "by": by}
    )


def decode_states(raw: dict[str, str]) -> list[SharedState]:
    """The states hash as written by :data:`SET_STATE_LUA`; entries that do not parse
    (another version of voxgate, a hand edit) are skipped."""
    out: list[SharedState] = []
    for alias, text in raw.items():
        try:
            body = json.loads(text)
            out.append(
                SharedState(
                    alias,
                    KeyState(body["state"]),
                    str(body.get("reason", ""))[:200],
                    str(body.get("by", "")),
                    int(body["version"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out
