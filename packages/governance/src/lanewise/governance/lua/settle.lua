-- Settle a batch of charges: per charge, release its holds, then (once per charge id) add
-- the actual amounts and the rate units learnt after the call. One script per batch: the
-- per-call cost of a script (lookup, argument parsing, reply) is paid once.
-- KEYS: ready, then per charge: marker, <rates> GCRA keys, per counter: hash, expiry zset.
-- ARGV: now_ms, marker_ttl_ms, n_charges, then per charge: rid, n_rates, n_counters,
--       per rate: period_ms, cost; per counter: amount, expire_at_ms.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = tonumber(ARGV[1])
local marker_ttl = ARGV[2]
local function int(x) return string.format('%d', x) end
local k, a = 1, 3

for _ = 1, tonumber(ARGV[3]) do
  local rid, n_rates, n_counters = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local marker = KEYS[k + 1]
  local rate_key, rate_arg = k + 1, a + 3
  local counter_key, counter_arg = k + 1 + n_rates, a + 3 + n_rates * 2
  for i = 1, n_counters do
    local h, x = KEYS[counter_key + (i - 1) * 2 + 1], KEYS[counter_key + (i - 1) * 2 + 2]
    local held = redis.call('HGET', h, 'h:' .. rid)
    if held then
      redis.call('HINCRBY', h, 'r', int(-tonumber(held)))
      redis.call('HDEL', h, 'h:' .. rid)
      redis.call('ZREM', x, rid)
    end
  end
  if redis.call('SET', marker, '1', 'NX', 'PX', marker_ttl) then
    for i = 1, n_counters do
      local h = KEYS[counter_key + (i - 1) * 2 + 1]
      redis.call('HINCRBY', h, 's', ARGV[counter_arg + (i - 1) * 2 + 1])
      local expire_at = tonumber(ARGV[counter_arg + (i - 1) * 2 + 2])
      if expire_at > 0 then redis.call('PEXPIREAT', h, int(expire_at)) end
    end
    for i = 1, n_rates do
      local g = KEYS[rate_key + i]
      local tat = tonumber(redis.call('GET', g) or '0')
      local period = tonumber(ARGV[rate_arg + (i - 1) * 2 + 1])
      local new_tat = math.max(tat, now) + period * tonumber(ARGV[rate_arg + (i - 1) * 2 + 2])
      redis.call('SET', g, tostring(new_tat), 'PX', 120000)
    end
  end
  k = counter_key + n_counters * 2
  a = counter_arg + n_counters * 2
end
return 1
