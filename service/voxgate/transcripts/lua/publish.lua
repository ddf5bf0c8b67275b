-- One batch of envelopes: PUBLISH on their channels, XADD to the stream (KEYS[1]).
-- ARGV[1] is the stream's MAXLEN; each further argument is one envelope: a header
-- line of decimal fields "S SEQ L0 L1 [L2]" (S is 1 when the envelope goes to the
-- stream, L0 the byte length of the session id, L1 (L2) those of its channels),
-- then, with no separator, the session id, the channels, and the envelope's JSON.
local maxlen = ARGV[1]
for i = 2, #ARGV do
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
  for k = 2, #parts do
    redis.call('PUBLISH', parts[k], text)
  end
  if fields[1] == '1' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
      'session_id', parts[1], 'seq', fields[2], 'envelope', text)
  end
end
return 1
