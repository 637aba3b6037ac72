-- Mark a job finished and bump its tenant's index version, once per job and atomically:
-- nobody reads a finished job without its version (IngestState.complete_job).
--
-- KEYS: 1 job:{j}  2 index_version:{t}
-- ARGV: 1 now
-- Returns the job's index version (the one given before, for a job already finished).
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then
  return tonumber(redis.call('HGET', KEYS[1], 'index_version') or '0')
end
local version = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'index_version', version, 'finished_at', ARGV[1])
return version
