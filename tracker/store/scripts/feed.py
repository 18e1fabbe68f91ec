"""The feed: a stream's lease, and announcing an operational event to it.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

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
