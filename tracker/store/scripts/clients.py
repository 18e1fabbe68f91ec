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

# The client an API key names, with its record, in one round trip (every request of the API
# asks). KEYS: the key's entry. ARGV: the key template (with %s) of a client's hash.
# Returns {client id, its hash as a flat field/value list}, or false for an unknown key.
FIND_CLIENT = """
local client_id = redis.call('GET', KEYS[1])
if not client_id then return false end
return {client_id, redis.call('HGETALL', string.format(ARGV[1], client_id))}
"""

# Delete a client's previous webhook secret once its overlap has ended.
# KEYS: client hash. ARGV: now. Returns 1 if deleted, 0 if there was none or it still signs.
END_ROTATION_OVERLAP = """
local ends = tonumber(redis.call('HGET', KEYS[1], 'previous_until'))
if ends == nil or ends > tonumber(ARGV[1]) then return 0 end
redis.call('HDEL', KEYS[1], 'previous_secret', 'previous_until')
return 1
"""
