-- Fixed window. param(1) limit, param(2) window. State: the window's start (s, n) and its
-- count c.
local limit = param(1)
local window = param(2)
local into = nowmod(window)
local v = redis.call('HMGET', key, 's', 'n', 'c')
local count = 0
if v[1] and rel(v[1], v[2]) == -into then
  count = tonumber(v[3])
end
local left = window - into
local after = count + cost
local function save(c)
  local s, n = at(-into)
  redis.call('HSET', key, 's', s, 'n', n, 'c', fmt(c))
  if c > 0 then
    expire(left)
  else
    expire(0)
  end
end
if after <= limit then
  save(after)
  return {0, limit - after, left}
end
if count_rejected then
  save(after)
end
if cost > limit then
  return {2, -1, 0}
end
return {2, left, 0}
