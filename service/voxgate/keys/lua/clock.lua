-- Prefix of every script: `now`, Redis's own clock in ms (replicas' clocks differ).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
