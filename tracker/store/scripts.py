"""The Lua scripts: each change that reads and writes in one step, atomic on the server.

Each documents its KEYS and ARGV; `tracker.store` registers them once per connection pool.
"""

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

# Drop a task from the due set unless it is tracked (again): a task cancelled and registered
# anew while a poller held its stale record must stay due.
# KEYS: task hash, due set. ARGV: task id. Returns how many entries were removed.
FORGET_DUE = """
if redis.call('HGET', KEYS[1], 'state') == 'tracking' then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""

# A token bucket refilled by the time elapsed on Redis's own clock (one clock for the whole
# fleet): take one token if there is one, else answer how long to wait for the next.
# KEYS: bucket hash. ARGV: rate per second, burst. Returns the wait in seconds, as a string.
TAKE_FROM_BUCKET = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""

# Keep one of a client's QuickRouter keys, unless it keeps `limit` others already.
# KEYS: the client's keys hash. ARGV: fingerprint, sealed key, limit. Returns 1 if kept.
ADD_UPSTREAM_KEY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and
   redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# Delete a client's previous webhook secret once its overlap has ended.
# KEYS: client hash. ARGV: now. Returns 1 if deleted, 0 if there was none or it still signs.
END_ROTATION_OVERLAP = """
local ends = tonumber(redis.call('HGET', KEYS[1], 'previous_until'))
if ends == nil or ends > tonumber(ARGV[1]) then return 0 end
redis.call('HDEL', KEYS[1], 'previous_secret', 'previous_until')
return 1
"""

# Take one of an origin's in-flight slots for an attempt, and one of its client's, unless the
# origin's circuit is open.
# KEYS: the origin's in-flight set (member -> lease end), its breaker hash, the client's
# in-flight set. ARGV: now, delivery id, lease end, slots per origin, slots per client.
# Returns {1, 0} admitted; {2, 0} admitted as the one probe of a half-open origin; {0, t} open
# (or probing) until t; {-1, 0} busy: every slot of the origin, or of the client, is in flight.
# Leases that ran out (a worker died mid-attempt) are dropped first, so a slot is never lost
# for good.
ACQUIRE_SLOT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local ttl = math.ceil(tonumber(ARGV[3]) - now) + 60
if not redis.call('ZSCORE', KEYS[3], ARGV[2]) and
   redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then
  return {-1, '0'}
end
local open_until = tonumber(redis.call('HGET', KEYS[2], 'open_until') or '0')
local kind = 1
if open_until > 0 then
  if now < open_until then return {0, tostring(open_until)} end
  local probe = tonumber(redis.call('HGET', KEYS[2], 'probe_until') or '0')
  if probe > now then return {0, tostring(probe)} end
  redis.call('HSET', KEYS[2], 'probe_until', ARGV[3])
  kind = 2
elseif not redis.call('ZSCORE', KEYS[1], ARGV[2]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return {-1, '0'}
end
for i = 1, 3, 2 do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[2])
  redis.call('EXPIRE', KEYS[i], ttl)
end
return {kind, '0'}
"""

# Give an attempt's slot back and tell the origin's breaker how it went: a success closes the
# circuit; a failure counts, and the threshold-th failure in a row (or a failed probe) opens
# it, for the base interval, or twice the last one up to the maximum.
# It also counts the attempt in the destination's figures (`tracker.core.destinations`): 24
# hourly slots of successes, failures and milliseconds, each slot starting over when its hour
# comes round again; the last success and error, and since when it fails; kept two days.
# A destination it disables is noted in the operations outbox, to be announced as
# `destination.disabled` (`tracker.core.operations`).
# KEYS: in-flight set, breaker hash, the set of open origins (name -> open until), the client's
# in-flight set, the destination's figures, the client's destinations (origin -> last attempt),
# the operations outbox.
# ARGV: delivery id, failed (1/0), now, threshold, base interval, maximum interval, the name
# ("client origin"), how long the breaker hash outlives its last failure, the attempt's
# milliseconds, what it failed with (a status or an error's class), the origin, and how long
# it may fail without a break before it is disabled (0: never; TRACKER_DISABLE_AFTER).
# Returns 1 if this attempt opened the circuit, 2 if it disabled the destination, else 0.
RELEASE_SLOT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local now = tonumber(ARGV[3])
local hour = math.floor(now / 3600)
local slot = tostring(hour % 24)
if redis.call('HGET', KEYS[5], slot .. ':h') ~= tostring(hour) then
  redis.call('HSET', KEYS[5], slot .. ':h', hour, slot .. ':ok', 0, slot .. ':fail', 0,
             slot .. ':ms', 0)
end
redis.call('HINCRBY', KEYS[5], slot .. ':ms', ARGV[9])
if ARGV[2] == '0' then
  redis.call('HINCRBY', KEYS[5], slot .. ':ok', 1)
  redis.call('HSET', KEYS[5], 'last_ok_at', ARGV[3])
  redis.call('HDEL', KEYS[5], 'failing_since')
else
  redis.call('HINCRBY', KEYS[5], slot .. ':fail', 1)
  redis.call('HSET', KEYS[5], 'last_error', ARGV[10], 'last_error_at', ARGV[3])
  redis.call('HSETNX', KEYS[5], 'failing_since', ARGV[3])
end
redis.call('EXPIRE', KEYS[5], 172800)
redis.call('ZADD', KEYS[6], now, ARGV[11])
redis.call('EXPIRE', KEYS[6], 172800)
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[7])
  return 0
end
local failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
redis.call('HSET', KEYS[2], 'origin', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[8])
local since = tonumber(redis.call('HGET', KEYS[5], 'failing_since') or ARGV[3])
local after = tonumber(ARGV[12])
if after > 0 and now - since >= after and not redis.call('HGET', KEYS[5], 'disabled_at') then
  -- Failing without a break for so long: disabled, its circuit open until its owner
  -- enables it again (ten years stands for that), its records kept until then.
  local forever = now + 315360000
  redis.call('HSET', KEYS[5], 'disabled_at', ARGV[3])
  redis.call('PERSIST', KEYS[5])
  redis.call('HSET', KEYS[2], 'open_until', tostring(forever))
  redis.call('HDEL', KEYS[2], 'probe_until')
  redis.call('PERSIST', KEYS[2])
  redis.call('ZADD', KEYS[3], forever, ARGV[7])
  redis.call('ZADD', KEYS[7], now, 'disabled ' .. ARGV[7] .. ' ' .. ARGV[3])
  return 2
end
local open_until = tonumber(redis.call('HGET', KEYS[2], 'open_until') or '0')
if failures < tonumber(ARGV[4]) or open_until > now then return 0 end
local interval = tonumber(redis.call('HGET', KEYS[2], 'interval') or '0')
if interval > 0 then
  interval = math.min(interval * 2, tonumber(ARGV[6]))
else
  interval = tonumber(ARGV[5])
end
open_until = now + interval
redis.call('HSET', KEYS[2], 'open_until', tostring(open_until), 'interval', tostring(interval))
redis.call('HDEL', KEYS[2], 'probe_until')
redis.call('ZADD', KEYS[3], open_until, ARGV[7])
return 1
"""

# Take (or renew) one of a client's stream leases, unless it holds `limit` live ones already.
# KEYS: the client's stream leases (token -> lease end). ARGV: token, now, lease end, limit.
# Returns 1 if held, 0 if refused. Leases that ran out (their process died) are dropped first.
OPEN_STREAM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) - tonumber(ARGV[2])) + 60)
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

# Give back the slots a claim took for a delivery that was not attempted after all (it had
# ended, its subscription was gone, its time had run out), without a verdict for the breaker.
# KEYS: the delivery hash. ARGV: delivery id, 1 if the claim was its origin's probe, and the
# key templates of an origin's in-flight set and breaker, and of a client's in-flight set.
# Returns 1 if a slot was given back.
VACATE_SLOT = """
local found = redis.call('HMGET', KEYS[1], 'origin_key', 'client_id')
if found[2] then redis.call('ZREM', string.format(ARGV[5], found[2]), ARGV[1]) end
local okey = found[1]
if not okey then return 0 end
if ARGV[2] == '1' then redis.call('HDEL', string.format(ARGV[4], okey), 'probe_until') end
return redis.call('ZREM', string.format(ARGV[3], okey), ARGV[1])
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


# Which of a client's tasks has upstream id ARGV[1]: the one under the shared key, else the
# one under each key it registered tasks with, or holds now (see `tracker.core.ids.tracking_id`).
# KEYS: the client's task index, its key scopes. ARGV: the upstream task id, the name of the
# scope of shared-key tasks owned by another client (upstream_keys.DENIED), then the names of
# the keys it holds now (kept under the home tag: read before, passed in).
# Returns the tracking id, or false.
FIND_TRACKED = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return ARGV[1] end
local names = redis.call('ZRANGE', KEYS[2], 0, -1)
for i = 2, #ARGV do table.insert(names, ARGV[i]) end
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


# Take an Idempotency-Key for one request, unless another request holds it. A record left
# `started` by the same request body more than ARGV[5] s ago (its request died before it
# ended; 0: never) is taken over: for a request that can safely run twice (a registration).
# KEYS: the key's record. ARGV: the request's hash, now, seconds to keep the record, the
# taker's token, the stale age.
# Returns false if taken now, else the record's fields (HGETALL) as they are.
BEGIN_INTENT = """
local state = redis.call('HGET', KEYS[1], 'state')
if state then
  local stale = tonumber(ARGV[5])
  local started = tonumber(redis.call('HGET', KEYS[1], 'started_at') or '0')
  if stale <= 0 or state ~= 'started' or started + stale > tonumber(ARGV[2])
      or redis.call('HGET', KEYS[1], 'request') ~= ARGV[1] then
    return redis.call('HGETALL', KEYS[1])
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'request', ARGV[1], 'state', 'started', 'started_at', ARGV[2],
           'token', ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return false
"""

# Move an Idempotency-Key's record on, only for the request that holds it (its token; '' for
# a request that resumed another's record): a duplicate never writes over the first request's
# answer, nor deletes its record. Never writes a record that has expired (it would not expire
# again). KEYS: the record. ARGV: token, then field/value pairs (none: delete the record).
# Returns 1 if written.
SETTLE_INTENT = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if #ARGV == 1 then return redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
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

# Count one call in a fixed window: the counter lives as long as its window (plus a second).
# One call where MULTI/INCR/EXPIRE/EXEC were four commands on every registration.
# KEYS: the window's counter. ARGV: its lifetime in seconds. Returns the count.
COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# Announce one noted operational event, once: if the outbox still holds its note, take the
# note out, append the event to the client's feed, and (with a delivery) make the delivery to
# the client's operational subscription, due at once. Whoever comes second finds no note.
# KEYS: the outbox, the client's feed, then with a delivery: its hash, its subscription's
# delivery list, the due set, its destination's waiting set.
# ARGV: the note, the feed's length bound, the oldest entry id kept, the feed's lifetime in
# seconds, how many feed field/value items follow, those items, then the delivery's id, its
# due time and its field/value items (none without a delivery).
# Returns 1 if announced, 0 if it was already.
ANNOUNCE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local n = tonumber(ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 6, 5 + n))
redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
if #KEYS > 2 then
  local id = ARGV[6 + n]
  redis.call('HSET', KEYS[3], unpack(ARGV, 8 + n))
  redis.call('LREM', KEYS[4], 0, id)
  redis.call('RPUSH', KEYS[4], id)
  redis.call('LTRIM', KEYS[4], -1000, -1)
  redis.call('ZADD', KEYS[5], ARGV[7 + n], id)
  redis.call('ZADD', KEYS[6], ARGV[7 + n], id)
end
return 1
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
