-- Settled and (unexpired) reserved amount of each counter.
-- KEYS: ready, then per counter: counter hash, expiry zset. ARGV: now_ms.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'rebuild'} end
local now = tonumber(ARGV[1])
local result = {'ok'}
for i = 2, #KEYS, 2 do
  local h, x = KEYS[i], KEYS[i + 1]
  local expired = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  for _, old in ipairs(expired) do
    local amount = tonumber(redis.call('HGET', h, 'h:' .. old) or '0')
    redis.call('HINCRBY', h, 'r', string.format('%d', -amount))
    redis.call('HDEL', h, 'h:' .. old)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', x, '-inf', now) end
  local state = redis.call('HMGET', h, 's', 'r')
  result[#result + 1] = state[1] or '0'
  result[#result + 1] = state[2] or '0'
end
return result
