-- One admission decision, atomically: GCRA rate limits, then the largest completion
-- allowance that fits every budget, then the holds. Nothing is written on refusal.
-- KEYS: ready, <rates> GCRA keys, then per hold: counter hash, expiry zset.
-- ARGV: now_ms, rid, ttl_ms, min_allowance, max_allowance, n_rates, n_holds,
--       per rate: period_ms, cost, shadow; per hold: limit, base, rate, shadow, expire_at_ms.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'rebuild'} end
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local ttl = tonumber(ARGV[3])
local min_allow = tonumber(ARGV[4])
local allowance = tonumber(ARGV[5])
local n_rates = tonumber(ARGV[6])
local n_holds = tonumber(ARGV[7])
local WINDOW = 60000
local function int(x) return string.format('%d', x) end

local tats = {}
for i = 1, n_rates do
  local a = 7 + (i - 1) * 3
  local period, cost, shadow = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3] == '1'
  local tat = tonumber(redis.call('GET', KEYS[1 + i]) or '0')
  local new_tat = math.max(tat, now) + cost * period
  local excess = new_tat - now - WINDOW
  if excess > 0 and not shadow then
    return {'rate', tostring(i - 1), tostring(excess)}
  end
  tats[i] = new_tat
end

local base_arg = 7 + n_rates * 3
local first_key = 1 + n_rates
local holds = {}
local index = -1
for i = 1, n_holds do
  local a = base_arg + (i - 1) * 5
  local h, x = KEYS[first_key + (i - 1) * 2 + 1], KEYS[first_key + (i - 1) * 2 + 2]
  local expired = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  for _, old in ipairs(expired) do
    local amount = tonumber(redis.call('HGET', h, 'h:' .. old) or '0')
    redis.call('HINCRBY', h, 'r', int(-amount))
    redis.call('HDEL', h, 'h:' .. old)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', x, '-inf', now) end
  local state = redis.call('HMGET', h, 's', 'r')
  local hold = {
    h = h, x = x,
    limit = tonumber(ARGV[a + 1]), base = tonumber(ARGV[a + 2]), rate = tonumber(ARGV[a + 3]),
    shadow = ARGV[a + 4] == '1', expire_at = tonumber(ARGV[a + 5]),
    settled = tonumber(state[1] or '0'),
    used = tonumber(state[1] or '0') + tonumber(state[2] or '0'),
  }
  holds[i] = hold
  if not hold.shadow then
    local room = hold.limit - hold.used - hold.base
    local fits
    if room < 0 then fits = -1
    elseif hold.rate > 0 then fits = math.floor(room / hold.rate)
    else fits = tonumber(ARGV[5]) end
    if fits < allowance then allowance, index = fits, i - 1 end
  end
end
if allowance < min_allow then
  return {'budget', tostring(index), int(holds[index + 1].used), int(holds[index + 1].settled)}
end

for i = 1, n_rates do
  redis.call('SET', KEYS[1 + i], tostring(tats[i]), 'PX', WINDOW * 2)
end
local result = {'ok', int(allowance), tostring(index)}
for i = 1, n_holds do
  local hold = holds[i]
  local amount = hold.base + allowance * hold.rate
  redis.call('HINCRBY', hold.h, 'r', int(amount))
  redis.call('HINCRBY', hold.h, 'h:' .. rid, int(amount))
  redis.call('ZADD', hold.x, int(now + ttl), rid)
  if hold.expire_at > 0 then
    redis.call('PEXPIREAT', hold.h, int(hold.expire_at))
    redis.call('PEXPIREAT', hold.x, int(hold.expire_at))
  end
  local shadow_hit = hold.shadow and (hold.used + amount > hold.limit)
  result[#result + 1] = int(amount)
  result[#result + 1] = shadow_hit and '1' or '0'
end
return result
