-- Shared prelude of every rate-limit script. One key per decision (KEYS[1]), so a script
-- never crosses a Redis Cluster slot.
--
-- ARGV[1], ARGV[2]: the time as whole seconds and nanoseconds since the Unix epoch, or an
-- empty ARGV[1] to read Redis TIME (so every gateway uses the same clock).
-- ARGV[3]: the request's cost. ARGV[4]: '1' when refusals use up allowance.
-- ARGV[5..]: the algorithm's parameters.
--
-- Lua numbers are doubles: integers are exact only below 2^53, and nanoseconds since 1970
-- are far above that. So instants are stored as (seconds, nanoseconds) pairs and every
-- computation works on nanoseconds relative to now, which stay small.
local E9 = 1000000000
local MAX_EXACT = 9007199254740992
local key = KEYS[1]
local now_s, now_n
local injected = ARGV[1] ~= ''
if injected then
  now_s = tonumber(ARGV[1])
  now_n = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now_s = tonumber(t[1])
  now_n = tonumber(t[2]) * 1000
end
local cost = tonumber(ARGV[3])
local count_rejected = ARGV[4] == '1'

-- Floor division of non-negative integers below 2^53, corrected for rounding.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function ceildiv(a, b)
  if b == 0 then
    return 0
  end
  return idiv(a + b - 1, b)
end

-- A stored instant as signed nanoseconds from now.
local function rel(s, n)
  return (tonumber(s) - now_s) * E9 + (tonumber(n) - now_n)
end

-- The instant `d` nanoseconds from now as a (seconds, nanoseconds) pair of strings.
local function at(d)
  local t = now_n + d
  local s = math.floor(t / E9)
  local n = t - s * E9
  if n < 0 then
    s = s - 1
    n = n + E9
  elseif n >= E9 then
    s = s + 1
    n = n - E9
  end
  return string.format('%.0f', now_s + s), string.format('%.0f', n)
end

local function fmt(x)
  return string.format('%.0f', x)
end

-- now modulo `w` nanoseconds (w < 2^52), exactly: windows are aligned to the Unix epoch.
local function nowmod(w)
  local base = now_s % w
  local acc = 0
  local m = E9
  while m > 0 do
    if m % 2 == 1 then
      acc = (acc + base) % w
    end
    base = (base * 2) % w
    m = math.floor(m / 2)
  end
  return (acc + now_n) % w
end

-- Expire the key when its state decides like a fresh one (`idle` nanoseconds from now).
-- With an injected time (tests, replays) Redis's own expiry clock does not follow it, so
-- the key is kept 10 s longer rather than dropped while still meaningful.
local function expire(idle)
  if idle <= 0 then
    redis.call('DEL', key)
  else
    local ms = ceildiv(idle, 1000000)
    if injected then
      ms = ms + 10000
    end
    redis.call('PEXPIRE', key, fmt(ms))
  end
end

-- A duration for the reply: -1 stands for "never" (u64::MAX nanoseconds).
local function out(d)
  if d >= MAX_EXACT then
    return -1
  end
  return d
end
