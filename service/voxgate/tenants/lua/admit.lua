-- One new session of one client, checked and booked atomically across replicas.
-- KEYS: the client's sessions (sorted set: member -> lease expiry, ms), its starts
-- (sorted set: member -> start time, ms), its usage hash of today, of this month.
-- ARGV: member, lease ttl ms, max sessions, sessions per minute, audio seconds per
-- day, per month (0: no limit).
-- Returns {1, audio used today, this month} (as strings), or {0, the limit reached}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max_sessions = tonumber(ARGV[3])
if max_sessions > 0 and redis.call('ZCARD', KEYS[1]) >= max_sessions then
  return {0, 'max_sessions'}
end
local per_minute = tonumber(ARGV[4])
if per_minute > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[2]) >= per_minute then
    return {0, 'sessions_per_minute'}
  end
end
local day = tonumber(redis.call('HGET', KEYS[3], 'audio_seconds') or '0')
local month = tonumber(redis.call('HGET', KEYS[4], 'audio_seconds') or '0')
local day_limit = tonumber(ARGV[5])
if day_limit > 0 and day >= day_limit then
  return {0, 'audio_hours_per_day'}
end
local month_limit = tonumber(ARGV[6])
if month_limit > 0 and month >= month_limit then
  return {0, 'audio_hours_per_month'}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
if per_minute > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 61000)
end
return {1, tostring(day), tostring(month)}
