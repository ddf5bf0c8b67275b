-- Keeps this replica's running sessions counted: each KEYS[i] is a client's sessions
-- sorted set, ARGV[1] the lease ttl in ms, ARGV[i + 1] the member to renew there.
-- A member that expired meanwhile (Redis down longer than the ttl) is added again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl * 2)
end
return #KEYS
