-- A new document's only batch, embedded and stored: stage it, plan it, record the batch,
-- claim the commit and, when the commit deletes nothing, commit it and finish its item.
-- One trip instead of three (IngestState.stage, only_batch_done, commit), atomic.
--
-- KEYS: 1 job:{j}  2 job:{j}:items  3 job:{j}:payloads  4 stage:{j}:{d}
--       5 stage:{j}:{d}:batches  6 stage:{j}:{d}:plan  7 doc:{t}:{d}:chunks
--       8 doc:{t}:{d}  9 hash:{t}
-- ARGV: 1 item  2 claim  3 now  4 key  5 document id  6 job  7 the item's record
--       8 the number of plan fields n, then n field/value pairs, then the chunk ids
-- Returns {0} when the item was finished before (a redelivered task), {1} when the
-- commit is left to the caller (claimed by another task, failed, or stale chunks to
-- delete from the store first), {2, total, finished, payload or false} when committed.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {0}
end
local fields = tonumber(ARGV[8])
local plan = {}
for i = 9, 8 + 2 * fields do
  plan[#plan + 1] = ARGV[i]
end
redis.call('HSET', KEYS[6], unpack(plan))
local ids = {}
for i = 9 + 2 * fields, #ARGV do
  ids[#ids + 1] = ARGV[i]
  if #ids == 1000 then
    redis.call('SADD', KEYS[4], unpack(ids))
    ids = {}
  end
end
if #ids > 0 then
  redis.call('SADD', KEYS[4], unpack(ids))
end
redis.call('SADD', KEYS[5], 0)
redis.call('HSET', KEYS[1], 'touched_at', ARGV[3])
redis.call('HSETNX', KEYS[6], 'committer', ARGV[2])
if redis.call('HGET', KEYS[6], 'committer') ~= ARGV[2]
    or redis.call('HEXISTS', KEYS[6], 'failed') == 1
    or #redis.call('SDIFF', KEYS[7], KEYS[4]) > 0 then
  return {1}
end
-- IngestState.commit, for a stage that replaces nothing.
local added = #redis.call('SDIFF', KEYS[4], KEYS[7])
local old_key = redis.call('HGET', KEYS[8], 'key')
redis.call('RENAME', KEYS[4], KEYS[7])
if added > 0 then
  redis.call('HINCRBY', KEYS[1], 'chunks_added', added)
end
redis.call('HSET', KEYS[8], 'key', ARGV[4], 'document_id', ARGV[5], 'source', ARGV[5],
  'job', ARGV[6])
if old_key and old_key ~= ARGV[4] then
  redis.call('HSET', KEYS[9], old_key, '')
end
redis.call('HSET', KEYS[9], ARGV[4], ARGV[5])
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[7])
local total = redis.call('HGET', KEYS[1], 'total')
local finished = redis.call('HLEN', KEYS[2])
local payload = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
return {2, total, finished, payload}
