"""Callback origins: a delivery's slot taken, released with the breaker's count, or vacated.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

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
