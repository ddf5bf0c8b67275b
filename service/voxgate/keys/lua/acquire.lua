-- Book the least loaded candidate key that is under its cap and has budget left.
-- KEYS: instances, then per candidate its active hash and starts set.
-- ARGV: instance, ttl ms, cap, budget, window ms, start id, then my count per candidate.
-- Returns {index of the booked candidate (0: none), why none}.
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
