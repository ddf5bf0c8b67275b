-- One batch of envelopes of one stream shard: PUBLISH (or SPUBLISH) on their channels,
-- XADD to the shard's stream (KEYS[1]). ARGV[1] is the stream's MAXLEN, ARGV[2] the
-- publish command, ARGV[3] the seconds a session's last stream seq is kept for the
-- duplicate guard (0: no guard); each further argument is one envelope: a header
-- line of decimal fields "S SEQ L0 L1 [L2 ...]" (S is 1 when the envelope goes to the
-- stream, L0 the byte length of the session id, L1... those of its channels), then,
-- with no separator, the session id, the channels, and the envelope's JSON.
-- The guard: KEYS[1]..":seq:"..<session id> (same hash slot) holds the session's last
-- SEQ on the stream; an envelope sent again (a batch retried after a lost reply or a
-- failover) is skipped, so the stream has each once.
local maxlen, pub, guard = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV do
  local a = ARGV[i]
  local nl = string.find(a, "\n", 1, true)
  local fields = {}
  for f in string.gmatch(string.sub(a, 1, nl - 1), "%d+") do
    fields[#fields + 1] = f
  end
  local pos = nl + 1
  local parts = {}
  for k = 3, #fields do
    local n = tonumber(fields[k])
    parts[#parts + 1] = string.sub(a, pos, pos + n - 1)
    pos = pos + n
  end
  local text = string.sub(a, pos)
  local fresh = true
  if guard > 0 and fields[1] == '1' then
    local seen = KEYS[1] .. ':seq:' .. parts[1]
    if tonumber(fields[2]) <= tonumber(redis.call('GET', seen) or '-1') then
      fresh = false
    else
      redis.call('SET', seen, fields[2], 'EX', guard)
    end
  end
  if fresh then
    for k = 2, #parts do
      redis.call(pub, parts[k], text)
    end
    if fields[1] == '1' then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
        'session_id', parts[1], 'seq', fields[2], 'envelope', text)
    end
  end
end
return 1
