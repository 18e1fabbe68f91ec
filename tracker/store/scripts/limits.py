"""Rates: a QuickRouter key's token bucket, a fixed window's counter, an Idempotency-Key's
hold and its answer.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

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

# Count one call in a fixed window: the counter lives as long as its window (plus a second).
# One call where MULTI/INCR/EXPIRE/EXEC were four commands on every registration.
# KEYS: the window's counter. ARGV: its lifetime in seconds. Returns the count.
COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
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
