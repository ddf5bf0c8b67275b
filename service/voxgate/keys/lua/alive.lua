-- Prefix: this instance's heartbeat in the instances set (KEYS[1]; ARGV[1] instance,
-- ARGV[2] ttl ms), dead instances dropped, and put_mine(active, count) to write
-- this instance's absolute count of sessions on one key.
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
