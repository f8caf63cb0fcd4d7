-- Sliding log, exact. param(1) limit, param(2) window. State: a list of the admitted
-- requests' instants, oldest first, each 'seconds:nanoseconds'. A request of cost n is n
-- entries, as in the pure log, so the list never holds more than `limit` entries, and
-- `used` is its length.
local limit = param(1)
local window = param(2)

-- An entry's instant, in nanoseconds from now.
local function when(entry)
  local s, n = string.match(entry, '^(%d+):(%d+)$')
  return rel(s, n)
end

-- Entries at or before now - window have left the window: drop them from the front, a few
-- at a time. (The pure log also asks for now >= window, which any instant since the epoch
-- is; the product below is only inexact when it is far above any window.)
if now_s * E9 + now_n >= window then
  local batch = 16
  while true do
    local head = redis.call('LRANGE', key, 0, batch - 1)
    local gone = 0
    for i = 1, #head do
      if when(head[i]) <= -window then
        gone = i
      else
        break
      end
    end
    if gone > 0 then
      redis.call('LTRIM', key, gone, -1)
    end
    if gone < batch then
      break
    end
  end
end
local used = redis.call('LLEN', key)
local entry = fmt(now_s) .. ':' .. fmt(now_n)

-- Appends `k` entries at now, in batches that stay below Lua's limit on unpacked values.
local function push(k)
  local batch = {}
  for i = 1, k do
    batch[#batch + 1] = entry
    if #batch == 1000 or i == k then
      redis.call('RPUSH', key, unpack(batch))
      batch = {}
    end
  end
end

-- The log decides like a fresh one once its newest entry has left the window.
local function expire_log()
  local newest = redis.call('LINDEX', key, -1)
  if newest then
    expire(when(newest) + window)
  else
    expire(0)
  end
end

if used + cost <= limit then
  if cost > 0 then
    push(cost)
  end
  expire_log()
  local oldest = 0
  local head = redis.call('LINDEX', key, 0)
  if head then
    oldest = when(head)
  end
  return {0, limit - used - cost, oldest + window}
end
if count_rejected then
  -- As the pure log: min(cost, limit) times, drop the oldest entry and add one at now. So
  -- the log keeps its length (one entry when it was empty), its oldest entries replaced.
  local k = math.min(cost, limit, math.max(used, 1))
  redis.call('LTRIM', key, k, -1)
  push(k)
  expire_log()
end
if cost > limit then
  return {2, -1}
end
-- The request fits once enough old entries have left the window.
local must_leave = used + cost - limit
local e = redis.call('LINDEX', key, must_leave - 1)
if e then
  return {2, math.max(when(e) + window, 0)}
end
return {2, window}
