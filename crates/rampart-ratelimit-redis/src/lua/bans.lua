-- Bans, around every algorithm (its body is the function `decide` above; for a strike by
-- another layer, a `decide` that always refuses), with the
-- semantics of rampart_ratelimit::Bans: a banned client is answered before the rate is
-- consulted; each refusal is counted in a fixed window of `within` aligned to the epoch; the
-- refusal that makes `after` bans for `duration`, doubled for each earlier ban still
-- remembered, capped at `max_duration`; strikes are remembered until the ban's end plus
-- `max_duration` plus `within`.
if ban_after == 0 then
  return decide()
end
local ban_key, strikes_key, refusals_key = KEYS[2], KEYS[3], KEYS[4]

local b = redis.call('HMGET', ban_key, 's', 'n')
if b[1] then
  local left = rel(b[1], b[2])
  if left > 0 then
    return {3, out(left)}
  end
end

local reply = decide()
if reply[1] ~= 2 then
  return reply
end

-- Count the refusal, as a FixedWindow of `after - 1` that counts its refusals: the refusal
-- it refuses is the `after`th.
if ban_after > 1 then
  local into = nowmod(ban_within)
  local start = -into
  local count = 0
  local v = redis.call('HMGET', refusals_key, 's', 'n', 'c')
  if v[1] then
    local stored = rel(v[1], v[2])
    -- A window later than now's (a clock read before an earlier decision's) stays current:
    -- time never moves a window back.
    if stored >= start then
      start = stored
      count = tonumber(v[3])
    end
  end
  count = count + 1
  local s, n = at(start)
  redis.call('HSET', refusals_key, 's', s, 'n', n, 'c', fmt(count))
  expire_key(refusals_key, start + ban_within)
  if count <= ban_after - 1 then
    return reply
  end
end

local strikes = 1
local k = redis.call('HMGET', strikes_key, 'k', 's', 'n')
if k[1] and rel(k[2], k[3]) > 0 then
  strikes = math.min(tonumber(k[1]) + 1, 4294967295)
end
-- 2^(strikes - 1), saturating at u32::MAX as the in-memory bans do.
local factor = 4294967295
if strikes <= 32 then
  factor = 2 ^ (strikes - 1)
end
-- Exact below ban_max (< 2^52); a larger product only needs to compare above it.
local length = math.min(ban_duration * factor, ban_max)
if length > 0 then
  local s, n = at(length)
  redis.call('HSET', ban_key, 's', s, 'n', n, 'k', fmt(strikes), 'c', ARGV[9])
end
expire_key(ban_key, length)
local forget = length + ban_max + ban_within
local s, n = at(forget)
redis.call('HSET', strikes_key, 'k', fmt(strikes), 's', s, 'n', n)
expire_key(strikes_key, forget)
-- The third element tells a new ban from one already in force (a strike reads it).
return {3, length, 1}
