-- KEYS: instances, states, then every key's active hash. ARGV: instance, ttl ms,
-- then my count per key. Returns the states hash.
for i = 3, #KEYS do put_mine(KEYS[i], tonumber(ARGV[i])) end
return redis.call('HGETALL', KEYS[2])
