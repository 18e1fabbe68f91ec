"""Copies of a task's videos: claiming due copies, staging a copy.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

# Lease up to ARGV[2] due copies, taking from each client in turn, none past a client's cap of
# copies in flight across the fleet (ARGV[5]): one client's thousand videos never take every
# slot. A copy passed over for its client's cap waits ARGV[7] s.
# KEYS: due set. ARGV: now, limit, lease end, scan, per-client cap, copy hash template,
# pass-over delay, client's in-flight set template. Returns {claimed ids, first due time}.
CLAIM_COPIES = """
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local cap = tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local claimed, room = {}, {}
for _, copy_id in ipairs(due) do
  if #claimed >= limit then break end
  local owner = redis.call('HGET', string.format(ARGV[6], copy_id), 'client_id')
  if not owner then
    redis.call('ZREM', KEYS[1], copy_id)
  else
    local busy = string.format(ARGV[8], owner)
    if room[owner] == nil then
      redis.call('ZREMRANGEBYSCORE', busy, '-inf', now)
      room[owner] = cap - redis.call('ZCARD', busy)
    end
    if room[owner] > 0 or redis.call('ZSCORE', busy, copy_id) then
      if not redis.call('ZSCORE', busy, copy_id) then room[owner] = room[owner] - 1 end
      redis.call('ZADD', busy, lease, copy_id)
      redis.call('PEXPIRE', busy, math.ceil((tonumber(lease) - now) * 1000) + 1000)
      redis.call('ZADD', KEYS[1], lease, copy_id)
      table.insert(claimed, copy_id)
    else
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[7]), copy_id)
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {claimed, first[2] or false}
"""

# Make one client's copy of a task, due now, in place of any earlier one (a task tracked
# again, a subscription to an ended task): what the earlier one had stored leaves the totals.
# KEYS: copy hash, due copies, storage totals. ARGV: copy id, client id, now, then the new
# record's fields and values.
STAGE_COPY = """
local objects = tonumber(redis.call('HGET', KEYS[1], 'stored_objects') or '0')
if objects > 0 then
  local size = tonumber(redis.call('HGET', KEYS[1], 'stored_bytes') or '0')
  for _, suffix in ipairs({'', ':' .. ARGV[2]}) do
    redis.call('HINCRBY', KEYS[3], 'objects' .. suffix, -objects)
    redis.call('HINCRBY', KEYS[3], 'bytes' .. suffix, -size)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
"""
