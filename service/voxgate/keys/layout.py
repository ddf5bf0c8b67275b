"""The shared key pool's Redis layout: key names, the state record, and the Lua
scripts that read and write them atomically (see :mod:`voxgate.keys.shared`).

Pure: nothing here talks to Redis. Keys appear only by alias, never the secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from voxgate.keys.pool import KeyState, Transition

PREFIX = "voxgate:pool:"
INSTANCES_KEY = PREFIX + "instances"
STATES_KEY = PREFIX + "states"
STATE_VERSION_KEY = PREFIX + "state_version"
ACTIVE_KEY = PREFIX + "active:{}"
STARTS_KEY = PREFIX + "starts:{}"

_CLOCK_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ALIVE = """
local me, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, me)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
local function put_mine(active, count)
  if count > 0 then
    redis.call('HSET', active, me, count)
    redis.call('PEXPIRE', active, ttl)
  else
    redis.call('HDEL', active, me)
  end
end
"""

#: KEYS: instances, then per candidate its active hash and starts set.
#: ARGV: instance, ttl ms, cap, budget, window ms, start id, then my count per candidate.
ACQUIRE_LUA = (
    _CLOCK_MS
    + _ALIVE
    + """
local cap, budget, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local best, best_load, why = 0, 2, 'at_capacity'
for i = 1, (#KEYS - 1) / 2 do
  local active, starts = KEYS[2 * i], KEYS[2 * i + 1]
  put_mine(active, tonumber(ARGV[6 + i]))
  local sum, fields = 0, redis.call('HGETALL', active)
  for j = 1, #fields, 2 do
    if redis.call('ZSCORE', KEYS[1], fields[j]) then
      sum = sum + tonumber(fields[j + 1])
    else
      redis.call('HDEL', active, fields[j])
    end
  end
  if sum < cap then
    redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - window)
    if redis.call('ZCARD', starts) < budget then
      if sum / cap < best_load then best, best_load = i, sum / cap end
    else
      why = 'rate_limited'
    end
  end
end
if best == 0 then return {0, why} end
local active, starts = KEYS[2 * best], KEYS[2 * best + 1]
redis.call('HINCRBY', active, me, 1)
redis.call('PEXPIRE', active, ttl)
redis.call('ZADD', starts, now, ARGV[6])
redis.call('PEXPIRE', starts, window)
return {best, ''}
"""
)

#: KEYS: instances, states, then every key's active hash. ARGV: instance, ttl ms,
#: then my count per key. Returns the states hash.
HEARTBEAT_LUA = (
    _CLOCK_MS
    + _ALIVE
    + """
for i = 3, #KEYS do put_mine(KEYS[i], tonumber(ARGV[i])) end
return redis.call('HGETALL', KEYS[2])
"""
)

#: KEYS: last version, states. ARGV: alias, state JSON. Returns the new version: Redis's
#: clock in ms, or one more than the last if that is later. Not a plain counter, so a
#: Redis that restarts empty still gives versions above those replicas have seen.
#: (13 digits: exact through Lua's doubles and cjson's 14 significant digits.)
SET_STATE_LUA = (
    _CLOCK_MS
    + """
local version = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0') + 1)
redis.call('SET', KEYS[1], string.format('%.0f', version))
local state = cjson.decode(ARGV[2])
state['version'] = version
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(state))
return version
"""
)


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
