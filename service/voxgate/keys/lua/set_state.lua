-- KEYS: last version, states. ARGV: alias, state JSON. Returns the new version: Redis's
-- clock in ms, or one more than the last if that is later. Not a plain counter, so a
-- Redis that restarts empty still gives versions above those replicas have seen.
-- (13 digits: exact through Lua's doubles and cjson's 14 significant digits.)
local version = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0') + 1)
redis.call('SET', KEYS[1], string.format('%.0f', version))
local state = cjson.decode(ARGV[2])
state['version'] = version
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(state))
return version
