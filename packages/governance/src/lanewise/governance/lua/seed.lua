-- Create counters that do not exist yet with what the ledger already holds (a budget
-- set at run time starts from the window's spend, not from zero). Existing ones win.
-- ARGV: prefix, then per counter: key, settled, expire_at_ms.
local prefix = ARGV[1]
local created = 0
for i = 2, #ARGV, 3 do
  local h = prefix .. 'c:' .. ARGV[i]
  if redis.call('EXISTS', h) == 0 then
    redis.call('HSET', h, 's', ARGV[i + 1], 'r', '0')
    if tonumber(ARGV[i + 2]) > 0 then redis.call('PEXPIREAT', h, ARGV[i + 2]) end
    created = created + 1
  end
end
return created
