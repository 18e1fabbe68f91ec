"""The due set of polls: claiming due tasks in leased batches, a poll's record, forgetting an
ended task's entry.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

# Record a poll that makes no event, only while the task is still tracked (a cancelled or
# ended task is never brought back): one that changed nothing but times and counts, or one
# whose status changed (ARGV[3] = 1) on a task none of whose subscriptions asked for status
# changes (its `status_events` is '0'; a record without the field may have such a one).
# KEYS: task hash, due set. ARGV: task id, next poll time, status changed (1/0), then field,
# value, field, value, …
# Returns 1 if written, 0 if the task is no longer tracking, 2 if the change makes events
# (then nothing is written: the caller records it with its events).
TOUCH_TASK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'tracking' then return 0 end
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'status_events') ~= '0' then return 2 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# How long a claim (CLAIM_DUE, CLAIM_DELIVERIES) puts off the due entries it looked at and did
# not take (a backlog of one client's polls, a busy origin's deliveries): long enough that the
# next claim looks behind them, so a backlog at the head of a due set never hides the rest;
# short enough that a poll is hardly late and a fast origin's next deliveries are due again by
# the time its slots free.
CLAIM_PASS_OVER = 0.05

# Claim up to ARGV[2] tasks due by ARGV[1], fairly across the clients that own them: of the
# first ARGV[4] due entries, one task of each owner is taken in turn (each owner's in due
# order), so a client with 3,000 tasks due at once gets no more of a claim than one with 30.
# The entries looked at and not taken are passed over by ARGV[5] s, so the next claim looks
# at the ones behind them: another client's task is never stuck behind a backlog. Each claimed
# task is leased by pushing its due time to ARGV[3], so no other worker claims it meanwhile,
# and a crashed worker's claims come due again.
# KEYS: due set. ARGV: now, limit, lease end, how many to look at, pass-over seconds, the key
# template (with %s for the id) of a task.
# Returns {claimed ids, the first due time left (claims included) or false}: an idle poller
# sleeps just that long.
CLAIM_DUE = """
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local queues, owners = {}, {}
for _, task_id in ipairs(due) do
  local owner = redis.call('HGET', string.format(ARGV[6], task_id), 'owner') or ''
  if not queues[owner] then
    queues[owner] = {}
    table.insert(owners, owner)
  end
  table.insert(queues[owner], task_id)
end
local claimed, taken, depth = {}, {}, 1
while #claimed < limit do
  local took = false
  for _, owner in ipairs(owners) do
    local task_id = queues[owner][depth]
    if task_id and #claimed < limit then
      table.insert(claimed, task_id)
      taken[task_id] = true
      took = true
    end
  end
  if not took then break end
  depth = depth + 1
end
for _, task_id in ipairs(claimed) do redis.call('ZADD', KEYS[1], ARGV[3], task_id) end
if #claimed < #due then
  local later = now + tonumber(ARGV[5])
  for _, task_id in ipairs(due) do
    if not taken[task_id] then redis.call('ZADD', KEYS[1], later, task_id) end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {claimed, first[2] or false}
"""

# Drop a task from the due set unless it is tracked (again): a task cancelled and registered
# anew while a poller held its stale record must stay due.
# KEYS: task hash, due set. ARGV: task id. Returns how many entries were removed.
FORGET_DUE = """
if redis.call('HGET', KEYS[1], 'state') == 'tracking' then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""
