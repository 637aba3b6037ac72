-- Push back the expiry of a live hold (a long stream is still running).
-- KEYS: per counter: counter hash, expiry zset. ARGV: rid, new expiry (ms).
local extended = 0
for i = 1, #KEYS, 2 do
  if redis.call('HEXISTS', KEYS[i], 'h:' .. ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[i + 1], 'XX', ARGV[2], ARGV[1])
    extended = extended + 1
  end
end
return extended
