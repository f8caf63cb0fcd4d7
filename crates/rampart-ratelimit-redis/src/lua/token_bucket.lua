-- Token bucket. param(1) capacity, param(2) refill count, param(3) refill period. State: the
-- level l in tokens times the period (absent: a full bucket) and the last update (s, n).
local capacity = param(1)
local rate = param(2)
local period = param(3)
local full = capacity * period
local v = redis.call('HMGET', key, 'l', 's', 'n')
local level = full
local last = 0
if v[1] then
  last = rel(v[2], v[3])
  local elapsed = math.max(-last, 0)
  level = math.min(tonumber(v[1]) + elapsed * rate, full)
end
local need = cost * period
last = math.max(last, 0)
local function save(l)
  local s, n = at(last)
  redis.call('HSET', key, 'l', fmt(l), 's', s, 'n', n)
  expire(last + ceildiv(full - l, rate))
end
if level >= need then
  local left = level - need
  save(left)
  return {0, idiv(left, period), ceildiv(full - left, rate)}
end
if count_rejected then
  save(0)
else
  save(level)
end
if need > full then
  return {2, -1, 0}
end
return {2, ceildiv(need - level, rate), 0}
