-- Leaky bucket with nginx limit_req arithmetic, as LeakyBucket::nginx: whole milliseconds
-- and thousandths of a request. param(1) rate in thousandths of a request per second,
-- param(2) burst and param(3) delay in thousandths of a request. State: the excess e in
-- thousandths of a request and the millisecond m (since the epoch) it was last set.
local rate = param(1)
local burst = param(2)
local delay = param(3)
local now_ms = now_s * 1000 + math.floor(now_n / 1000000)
local sub_ms = now_n % 1000000
local weight = cost * 1000
local v = redis.call('HMGET', key, 'e', 'm')
local seen = v[1] ~= false and v[1] ~= nil
local excess, elapsed, last
if seen then
  last = tonumber(v[2])
  elapsed = math.max(now_ms - last, 0)
  -- An elapsed time so long that rate * elapsed passes 2^53 leaks more than any excess.
  local leaked = muldiv(elapsed, rate, 1000)
  excess = math.max(tonumber(v[1]) - leaked + weight, 0)
else
  -- A key never seen starts empty: its first request leaves no excess.
  excess = math.max(weight - 1000, 0)
  elapsed = 0
end

local function save(e, m)
  redis.call('HSET', key, 'e', fmt(e), 'm', fmt(m))
  -- Fresh once the excess and one more request have leaked (nginx adds 1000 first).
  local drain_ms = muldiv_up(e + 1000, 1000, rate)
  expire((m + drain_ms - now_ms) * 1000000 - sub_ms)
end

-- Milliseconds as reply nanoseconds: exact up to 2^53 / 15625 ms (18 years, as
-- 1000000 = 2^6 * 15625), "never" beyond.
local function ms_out(ms)
  if ms >= 576460752303 then
    return -1
  end
  return ms * 1000000
end

if excess > burst then
  if count_rejected then
    save(excess, now_ms)
  end
  -- The excess must leak down to `burst` before a request fits again.
  local wait_ms = muldiv_up(excess - burst, 1000, rate)
  return {2, ms_out(math.max(wait_ms, 1))}
end
if elapsed > 0 or not seen then
  last = now_ms
end
save(excess, last)
if excess > delay then
  -- A delay that rounds down to 0 ms is no delay, as in nginx.
  local wait_ms = muldiv(excess - delay, 1000, rate)
  if wait_ms > 0 then
    return {1, ms_out(wait_ms)}
  end
end
return {0, idiv(burst - excess, 1000), ms_out(muldiv(excess, 1000, rate))}
