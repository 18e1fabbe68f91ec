"""Deliveries: the fair claim of due deliveries with their origins' slots, a batch's records
read at once, an attempt's record (and with its slot's release, in one step), skipping,
postponing and forgetting.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

from tracker.store.scripts.origins import RELEASE_SLOT

# How long a claim puts off the due deliveries of a client whose every slot
# (TRACKER_DELIVERIES_PER_CLIENT) is in flight: one of its attempts must end first, and a
# client with a thousand due deliveries should not be looked through at every claim.
CLIENT_BUSY = 0.5

# Claim up to ARGV[2] due deliveries that can go now, fairly across clients, taking a slot of
# each one's origin and of its client as it claims it, so deliveries to healthy origins go
# first and a busy or open origin costs no worker anything. Of the first ARGV[5] due entries,
# the clients take turns (each its own in due order): one client's backlog, or its thousand
# origins, never fills a claim while another's delivery waits. Of the entries whose origin or
# client cannot take them now: one of an open origin waits until the origin's open interval
# ends; one of a busy origin (every slot in flight) BUSY seconds, and so does one whose own
# attempt is still in flight (a redeliver made it due again): a delivery never has two
# attempts at once, and the redeliver's goes right after the one in flight; one of a client
# with ARGV[11] attempts in flight CLIENT_BUSY seconds. No wait outlasts the delivery's window
# (its created_at plus the window): one whose window is over is claimed plainly, without a
# slot, for the caller to end as dead, so a delivery behind an origin that stays open ends on
# time like any other. Entries with no origin on record (an orphan, a record written before
# origins were) are claimed plainly too, for the caller to sort out.
# KEYS: the due set.
# ARGV: now, limit, lease end, slots per origin, how many to look at, BUSY seconds, the key
# templates (with %s for the id) of a delivery, an origin's in-flight set and breaker, the
# delivery window in seconds, slots per client, the key template of a client's in-flight set.
# Returns {claimed ids, how each was claimed ('slot', 'probe' or 'plain'), the next due time
# or false}.
CLAIM_DELIVERIES = (
    """
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local slots, busy, window = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[10])
local per_client, client_busy = tonumber(ARGV[11]), """
    + repr(CLIENT_BUSY)
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
local ttl = math.ceil(lease - now) + 60
local queues, owners = {}, {}
for _, id in ipairs(due) do
  local found = redis.call('HMGET', string.format(ARGV[7], id), 'origin_key', 'created_at',
                           'client_id')
  local owner = found[3] or ''
  if not queues[owner] then
    queues[owner] = {}
    table.insert(owners, owner)
    if owner ~= '' then
      redis.call('ZREMRANGEBYSCORE', string.format(ARGV[12], owner), '-inf', now)
    end
  end
  table.insert(queues[owner], {id, found[1], found[2]})
end
-- What to do with one entry: a kind to claim it by, or false once it has been put off.
local function decide(id, okey, created, sending)
  if not okey then return 'plain' end
  local inflight, breaker = string.format(ARGV[8], okey), string.format(ARGV[9], okey)
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  local open_until = tonumber(redis.call('HGET', breaker, 'open_until') or '0')
  local expires = (tonumber(created) or now) + window
  if redis.call('ZSCORE', inflight, id) then
    redis.call('ZADD', KEYS[1], now + busy, id)
    return false
  elseif expires <= now then
    return 'plain'
  elseif sending and redis.call('ZCARD', sending) >= per_client then
    redis.call('ZADD', KEYS[1], math.min(now + client_busy, expires), id)
    return false
  elseif open_until > now then
    redis.call('ZADD', KEYS[1], math.min(open_until, expires), id)
    return false
  elseif open_until > 0 then
    local probe = tonumber(redis.call('HGET', breaker, 'probe_until') or '0')
    if probe > now then
      redis.call('ZADD', KEYS[1], math.min(probe, expires), id)
      return false
    end
    redis.call('HSET', breaker, 'probe_until', ARGV[3])
    return 'probe'
  elseif redis.call('ZCARD', inflight) >= slots then
    redis.call('ZADD', KEYS[1], math.min(now + busy, expires), id)
    return false
  end
  return 'slot'
end
local ids, kinds, place = {}, {}, {}  -- place: where each owner's queue goes on
local turning = true
while turning and #ids < limit do
  turning = false
  for _, owner in ipairs(owners) do
    if #ids >= limit then break end
    local queue, at = queues[owner], place[owner] or 1
    local sending = owner ~= '' and string.format(ARGV[12], owner) or false
    while at <= #queue do
      local entry = queue[at]
      at = at + 1
      local kind = decide(entry[1], entry[2], entry[3], sending)
      if kind then
        if kind ~= 'plain' then
          local inflight = string.format(ARGV[8], entry[2])
          redis.call('ZADD', inflight, lease, entry[1])
          redis.call('EXPIRE', inflight, ttl)
          if sending then
            redis.call('ZADD', sending, lease, entry[1])
            redis.call('EXPIRE', sending, ttl)
          end
        end
        redis.call('ZADD', KEYS[1], lease, entry[1])
        table.insert(ids, entry[1])
        table.insert(kinds, kind)
        turning = true
        break
      end
    end
    place[owner] = at
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {ids, kinds, first[2] or false}
"""
)

# Read what a claimed batch of deliveries is sent with, in one call: for each delivery, its
# hash, its subscription's hash, and for a final event (`Delivery.source`) the body kept for
# its attempts, or, without one (a redelivered event), what the body is built again from: the
# task's stored result and summary and its final answer's key.
# Why one script: a batch read as pipelined commands cost the worker more CPU than the POSTs.
# ARGV: the key templates of a delivery, a subscription, a task, a task's answer and a
# delivery's kept body; then the delivery ids. Returns, per id: {delivery fields,
# subscription fields, result, snapshot, answer, kept body}, each hash as a flat field/value
# list (empty when gone), each value false if none.
READ_OUTGOING = """
local found = {}
for i = 6, #ARGV do
  local key = string.format(ARGV[1], ARGV[i])
  local delivery = redis.call('HGETALL', key)
  local sub, source, body = {}, false, false
  local named = redis.call('HMGET', key, 'subscription_id', 'source')
  if named[1] then
    sub = redis.call('HGETALL', string.format(ARGV[2], named[1]))
    source = named[2]
  end
  local result, snapshot, answer = false, false, false
  if source and source ~= '' then
    body = redis.call('GET', string.format(ARGV[5], ARGV[i]))
    if not body then
      local kept = redis.call('HMGET', string.format(ARGV[3], source), 'result', 'snapshot')
      result, snapshot = kept[1], kept[2]
      answer = redis.call('GET', string.format(ARGV[4], source))
    end
  end
  table.insert(found, {delivery, sub, result, snapshot, answer, body})
end
return found
"""

# Record one attempt of a delivery, compare-and-set: only if the delivery is still pending, at
# the attempt number and the round (redeliveries) its sender read. A sender that was paused
# past its lease, or overtaken by a redeliver, so never moves a delivery back or writes its
# attempt log out of order. A final event that ends drops the body kept for its attempts (its
# task's record builds it again: `Delivery.source`).
# A delivery that ends dead is noted in the operations outbox, in the same step, to be
# announced as `delivery.exhausted` (`tracker.core.operations`).
# KEYS: delivery hash, its attempt log, the due set, the subscription hash (a 410 disables it),
# the delivery's kept body, the operations outbox.
# ARGV: delivery id, attempts read, round read, attempt (JSON), new state, next attempt time or
# '' when it ended, retention seconds, '1' to disable the subscription, the outbox member if
# it ends dead ('' for none: an operational event's own delivery), now, the key template
# (with %s) of a destination's waiting set (what ends leaves it).
# The log keeps a delivery's last 100 attempts, across its redeliver rounds.
# Returns 1 if recorded, 0 if the delivery had moved on (nothing written).
RECORD_ATTEMPT = """
local state = redis.call('HGET', KEYS[1], 'state')
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '-1')
local round = tonumber(redis.call('HGET', KEYS[1], 'round') or '0')
if state ~= 'pending' or attempts ~= tonumber(ARGV[2]) or round ~= tonumber(ARGV[3]) then
  return 0
end
if ARGV[8] == '1' then redis.call('HSET', KEYS[4], 'state', 'disabled') end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], -100, -1)
redis.call('HSET', KEYS[1], 'attempts', attempts + 1, 'state', ARGV[5])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[6])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('DEL', KEYS[5])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
  if ARGV[5] == 'dead' and ARGV[9] ~= '' then redis.call('ZADD', KEYS[6], ARGV[10], ARGV[9]) end
  local okey = redis.call('HGET', KEYS[1], 'origin_key')
  if okey then redis.call('ZREM', string.format(ARGV[11], okey), ARGV[1]) end
end
return 1
"""

# Close a delivery whose subscription is gone, without an attempt, if it is still pending.
# KEYS: delivery hash, its attempt log, due set, its kept body. ARGV: delivery id, retention
# seconds, the key template (with %s) of a destination's waiting set.
# Returns 1 if skipped.
SKIP_DELIVERY = """
local state, okey = unpack(redis.call('HMGET', KEYS[1], 'state', 'origin_key'))
if state ~= 'pending' then return 0 end
if okey then redis.call('ZREM', string.format(ARGV[3], okey), ARGV[1]) end
redis.call('HSET', KEYS[1], 'state', 'skipped')
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
"""

# Drop a delivery from the due set unless it is pending: an ended delivery, or one whose record
# expired or never was (an orphan), is never claimed again (nor is a body kept for it).
# KEYS: delivery hash, due set, its kept body. ARGV: delivery id, the key template (with %s)
# of a destination's waiting set. Returns how many entries were removed.
FORGET_DELIVERY = """
local state, okey = unpack(redis.call('HMGET', KEYS[1], 'state', 'origin_key'))
if state == 'pending' then return 0 end
redis.call('DEL', KEYS[3])
if okey then redis.call('ZREM', string.format(ARGV[2], okey), ARGV[1]) end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""

# Put a pending delivery off to ARGV[2] without an attempt; nothing for one that ended or no
# longer exists (writing its hash would make a record of nothing but a time).
# KEYS: delivery hash, due set. ARGV: delivery id, when. Returns 1 if put off.
POSTPONE_DELIVERY = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[2])
return 1
"""


def in_sequence(first: str, first_keys: int, first_args: int, second: str) -> str:
    """One script that runs `first` on the first `first_keys` KEYS and `first_args` ARGV, then
    `second` on the rest, and returns {first's answer, second's}: two steps that always go
    together, in one round trip."""
    return f"""
local function first(KEYS, ARGV)
{first}
end
local function second(KEYS, ARGV)
{second}
end
local k1, a1, k2, a2 = {{}}, {{}}, {{}}, {{}}
for i, v in ipairs(KEYS) do
  if i <= {first_keys} then k1[i] = v else k2[i - {first_keys}] = v end
end
for i, v in ipairs(ARGV) do
  if i <= {first_args} then a1[i] = v else a2[i - {first_args}] = v end
end
return {{first(k1, a1), second(k2, a2)}}
"""


# RECORD_ATTEMPT, then RELEASE_SLOT: an attempt's record and its slot's release (with the
# breaker's count) in one step. KEYS and ARGV: RECORD_ATTEMPT's, then RELEASE_SLOT's.
# Returns {recorded (1/0), opened (1/0)}.
CONCLUDE_ATTEMPT = in_sequence(RECORD_ATTEMPT, 6, 11, RELEASE_SLOT)
