-- Settle one charge: release its holds, then (once per charge id) add the actual amounts
-- and the rate units learnt after the call.
-- KEYS: ready, marker, <rates> GCRA keys, then per counter: counter hash, expiry zset.
-- ARGV: now_ms, rid, marker_ttl_ms, n_rates, n_counters,
--       per rate: period_ms, cost; per counter: amount, expire_at_ms.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local n_rates = tonumber(ARGV[4])
local n_counters = tonumber(ARGV[5])
local function int(x) return string.format('%d', x) end
local first_key = 2 + n_rates
local base_arg = 5 + n_rates * 2

for i = 1, n_counters do
  local h, x = KEYS[first_key + (i - 1) * 2 + 1], KEYS[first_key + (i - 1) * 2 + 2]
  local held = redis.call('HGET', h, 'h:' .. rid)
  if held then
    redis.call('HINCRBY', h, 'r', int(-tonumber(held)))
    redis.call('HDEL', h, 'h:' .. rid)
    redis.call('ZREM', x, rid)
  end
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) == false then return 1 end
for i = 1, n_counters do
  local a = base_arg + (i - 1) * 2
  local h = KEYS[first_key + (i - 1) * 2 + 1]
  redis.call('HINCRBY', h, 's', ARGV[a + 1])
  local expire_at = tonumber(ARGV[a + 2])
  if expire_at > 0 then redis.call('PEXPIREAT', h, int(expire_at)) end
end
for i = 1, n_rates do
  local a = 5 + (i - 1) * 2
  local tat = tonumber(redis.call('GET', KEYS[2 + i]) or '0')
  local new_tat = math.max(tat, now) + tonumber(ARGV[a + 1]) * tonumber(ARGV[a + 2])
  redis.call('SET', KEYS[2 + i], tostring(new_tat), 'PX', 120000)
end
return 2
