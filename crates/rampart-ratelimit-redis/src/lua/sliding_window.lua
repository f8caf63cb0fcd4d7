-- Sliding window counter. param(1) limit, param(2) window. State: the current window's
-- start (s, n), its count c and the previous window's count p.
local limit = param(1)
local w = param(2)
local into = nowmod(w)
local v = redis.call('HMGET', key, 's', 'n', 'c', 'p')
local count, prev = 0, 0
if v[1] then
  -- The stored window's start relative to the current one.
  local shift = rel(v[1], v[2]) + into
  if shift == 0 then
    count = tonumber(v[3])
    prev = tonumber(v[4])
  elseif shift == -w then
    prev = tonumber(v[3])
  end
end
local scaled_limit = limit * w
local estimate = prev * (w - into) + count * w
local after = estimate + cost * w
local function save()
  local s, n = at(-into)
  redis.call('HSET', key, 's', s, 'n', n, 'c', fmt(count), 'p', fmt(prev))
  if count > 0 then
    expire(2 * w - into)
  elseif prev > 0 then
    expire(w - into)
  else
    expire(0)
  end
end
if after <= scaled_limit then
  count = count + cost
  save()
  local reset = w - into
  if count > 0 then
    reset = reset + w
  end
  return {0, idiv(scaled_limit - after, w), reset}
end
if count_rejected then
  count = count + cost
  save()
end
-- How long until a request of this cost fits: later in this window as the previous
-- window's weight fades, or in the next one, where this window's count fades.
local need_now = (count + cost) * w
if need_now <= scaled_limit and prev > 0 then
  local fade = idiv(scaled_limit - need_now, prev)
  local start = math.max(w - fade, 0)
  if start < w then
    return {2, math.max(start - into, 0), 0}
  end
end
local cost_scaled = cost * w
if cost_scaled > scaled_limit then
  return {2, -1, 0}
end
local x = 0
if count > 0 then
  x = math.max(w - idiv(scaled_limit - cost_scaled, count), 0)
end
return {2, w - into + math.min(x, w), 0}
