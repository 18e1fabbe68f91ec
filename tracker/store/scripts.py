"""The Lua scripts: each change that reads and writes in one step, atomic on the server.

Each documents its KEYS and ARGV; `tracker.store` registers them once per connection pool.
"""

from __future__ import annotations

# Record a poll that changed nothing but times and counts, only while the task is still tracked
# (a cancelled or ended task is never brought back).
# KEYS: task hash, due set. ARGV: task id, next poll time, then field, value, field, value, …
# Returns 1 if written, 0 if the task is no longer tracking.
TOUCH_TASK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'tracking' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# Claim up to ARGV[2] tasks due by ARGV[1]: each is leased by pushing its due time to ARGV[3],
# so no other worker claims it meanwhile, and a crashed worker's claims come due again.
# KEYS: due set. ARGV: now, limit, lease end.
# Returns {claimed ids, the first due time left (claims included) or false}: an idle poller
# sleeps just that long.
CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, task_id in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], task_id) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, first[2] or false}
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

# Delete a client's previous webhook secret once its overlap has ended.
# KEYS: client hash. ARGV: now. Returns 1 if deleted, 0 if there was none or it still signs.
END_ROTATION_OVERLAP = """
local ends = tonumber(redis.call('HGET', KEYS[1], 'previous_until'))
if ends == nil or ends > tonumber(ARGV[1]) then return 0 end
redis.call('HDEL', KEYS[1], 'previous_secret', 'previous_until')
return 1
"""
