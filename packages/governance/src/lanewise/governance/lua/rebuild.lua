-- Load counters rebuilt from the ledger, unless another replica already did.
-- KEYS: ready. ARGV: marker_ttl_ms, prefix, n_counters, then per counter: key, settled,
-- expire_at_ms; then the ids of recent charges already counted.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local prefix = ARGV[2]
local n = tonumber(ARGV[3])
for i = 1, n do
  local a = 3 + (i - 1) * 3
  local h, x = prefix .. 'c:' .. ARGV[a + 1], prefix .. 'x:' .. ARGV[a + 1]
  redis.call('DEL', h, x)
  redis.call('HSET', h, 's', ARGV[a + 2], 'r', '0')
  local expire_at = tonumber(ARGV[a + 3])
  if expire_at > 0 then redis.call('PEXPIREAT', h, ARGV[a + 3]) end
end
for i = 4 + n * 3, #ARGV do
  redis.call('SET', prefix .. 'm:' .. ARGV[i], '1', 'PX', ARGV[1])
end
redis.call('SET', KEYS[1], '1')
return 1
