"""Registering and finding tasks: the registration's compare-and-set, the lookup of a client's
task by its upstream id, the key holder, the sweep of a client's index, the search.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

# Commit a registration decided on a read of the task (`Tasks.register`), if the task is still
# as read: the same state and subscription list (compare-and-set; a poll touching its times and
# counts meanwhile is no conflict). Refuses if the client would pass its limit of live tasks.
# KEYS: task hash, subscription hash, its delivery list, due set, client's tasks, client's
# live tasks. ARGV: tracking id, state read ('' if none), subscription list read, now, first
# poll time, live-task limit, 1 to write the task anew (a new or a cancelled one: then its
# first poll is due) or 0 to update it, how many task field/value items follow, those items,
# then the subscription's field/value items.
# Returns 1 if written, 0 on a conflict (read again), -1 past the live-task limit.
REGISTER = """
local state = redis.call('HGET', KEYS[1], 'state') or ''
local subs = redis.call('HGET', KEYS[1], 'subs') or ''
if state ~= ARGV[2] or subs ~= ARGV[3] then return 0 end
if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 0
    and redis.call('SCARD', KEYS[6]) >= tonumber(ARGV[6]) then return -1 end
local n = tonumber(ARGV[8])
if ARGV[7] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 9, 8 + n))
redis.call('HSET', KEYS[2], unpack(ARGV, 9 + n))
redis.call('ZADD', KEYS[5], 'NX', ARGV[4], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[1])
for i = 1, 3 do redis.call('PERSIST', KEYS[i]) end
return 1
"""

# Which of a client's tasks has upstream id ARGV[1]: the one under the shared key, else the
# one under each key it registered tasks with, or holds now (see `tracker.core.ids.tracking_id`).
# KEYS: the client's task index, its upstream keys hash, its key scopes (all in the client's
# partition). ARGV: the upstream task id, the name of the scope of shared-key tasks owned by
# another client (upstream_keys.DENIED).
# Returns the tracking id, or false.
FIND_TRACKED = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return ARGV[1] end
local names = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do table.insert(names, name) end
table.insert(names, ARGV[2])
for _, name in ipairs(names) do
  local candidate = name .. '~' .. ARGV[1]
  if redis.call('ZSCORE', KEYS[1], candidate) then return candidate end
end
return false
"""

# Poll a tracked task with another subscriber's copy of its key from now on.
# KEYS: task hash. ARGV: the new holder's client id. Returns 1 if written.
HAND_KEY = """
if redis.call('HGET', KEYS[1], 'state') ~= 'tracking' then return 0 end
redis.call('HSET', KEYS[1], 'key_holder', ARGV[1])
return 1
"""

# Drop from a client's task index the tasks whose records have expired, looking at up to
# ARGV[3] entries registered after ARGV[1] (exclusive) and by ARGV[2], oldest first.
# KEYS: the index. ARGV: after, cutoff, limit, the key template (with %s) of a task.
# Returns {how many were dropped, the score of the last entry looked at, or false if none}.
FORGET_EXPIRED_TASKS = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'WITHSCORES',
                         'LIMIT', 0, tonumber(ARGV[3]))
local dropped, last = 0, false
for i = 1, #found, 2 do
  last = found[i + 1]
  if redis.call('EXISTS', string.format(ARGV[4], found[i])) == 0 then
    redis.call('ZREM', KEYS[1], found[i])
    dropped = dropped + 1
  end
end
return {dropped, last}
"""

# The dashboard's search, its first pass on the server: of a client's ARGV[1] newest tasks,
# those in state ARGV[4] (any: '') whose id, or the metadata of one of the client's own
# subscriptions, contains ARGV[3] ignoring ASCII case ('': every one, for the caller to
# match in full). What it passes over the full match would never find; what it returns, the
# caller matches in full (`tracker.core.search`).
# KEYS: the client's task index. ARGV: how many to look at, the client id, the lower-cased
# text or '', the state or '', the key templates (with %s) of a task and of a subscription.
# Returns, newest first, one {tracking id, its index score, task id, metadata…} per candidate.
SEARCH_TASKS = """
local found = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local needle, out = ARGV[3], {}
for i = 1, #found, 2 do
  local head = redis.call('HMGET', string.format(ARGV[5], found[i]), 'task_id', 'state', 'subs')
  if head[1] and (ARGV[4] == '' or head[2] == ARGV[4]) then
    local row = {found[i], found[i + 1], head[1]}
    local hit = needle == '' or string.find(string.lower(head[1]), needle, 1, true)
    for sub in string.gmatch(head[3] or '', '%S+') do
      local owner, meta = unpack(redis.call('HMGET', string.format(ARGV[6], sub), 'client_id',
                                            'metadata'))
      if owner == ARGV[2] and meta then
        table.insert(row, meta)
        -- Past ASCII, lower-casing may differ from Python's (the Kelvin sign is a k there):
        -- such a document is left to the full match.
        hit = hit or string.find(string.lower(meta), needle, 1, true) or
              string.find(meta, '[\\128-\\255]')
      end
    end
    if hit then table.insert(out, row) end
  end
end
return out
"""
