"""Clients: keeping one of their own QuickRouter keys, ending a secret's rotation overlap.

Each documents its KEYS and ARGV (`tracker.store.scripts`)."""

from __future__ import annotations

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
