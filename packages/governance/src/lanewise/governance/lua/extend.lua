-- Push back the expiry of a live hold (a long stream is still running); a hold already
-- past its expiry stays released, as in the in-process store.
-- KEYS: per counter: counter hash, expiry zset. ARGV: rid, now (ms), new expiry (ms).
local extended = 0
for i = 1, #KEYS, 2 do
  local expiry = redis.call('ZSCORE', KEYS[i + 1], ARGV[1])
  if expiry and tonumber(expiry) > tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[i + 1], 'XX', ARGV[3], ARGV[1])
    extended = extended + 1
  end
end
return extended
