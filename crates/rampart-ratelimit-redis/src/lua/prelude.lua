-- Shared prelude of every rate-limit script.
--
-- KEYS[1]: the algorithm's state. KEYS[2]: the client's ban, KEYS[3]: its strikes (how many
-- times it was banned, remembered for a while after the ban), KEYS[4]: its refusals in the
-- current counting window. All four share one hash tag, so a script never crosses a Redis
-- Cluster slot.
--
-- ARGV[1], ARGV[2]: the time as whole seconds and nanoseconds since the Unix epoch, or an
-- empty ARGV[1] to read Redis TIME (so every gateway uses the same clock).
-- ARGV[3]: the request's cost. ARGV[4]: '1' when refusals use up allowance.
-- ARGV[5]: refusals that ban (0: the policy has no ban rule); ARGV[6]: within how long, in
-- nanoseconds; ARGV[7], ARGV[8]: the first and the longest ban, in nanoseconds; ARGV[9]: the
-- client, kept in the ban so that a listing can tell whose it is.
-- ARGV[10..]: the algorithm's parameters, read with param(1), param(2), ...
--
-- Replies: {0, remaining, reset_ns} admit; {1, delay_ns} admit after a delay; {2, retry_ns}
-- refuse; {3, remaining_ns} the client is banned. -1 nanoseconds stands for "never".
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
local ban_after = tonumber(ARGV[5])
local ban_within = tonumber(ARGV[6])
local ban_duration = tonumber(ARGV[7])
local ban_max = tonumber(ARGV[8])

local function param(i)
  return tonumber(ARGV[9 + i])
end

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

-- floor(a * m / b) for non-negative integers a < 2^53 and m * b < 2^53, exactly even when
-- a * m is not: a = q * b + r, so a * m / b = q * m + r * m / b.
local function muldiv(a, m, b)
  local q = idiv(a, b)
  local r = a - q * b
  return q * m + idiv(r * m, b)
end

-- The same, rounded up.
local function muldiv_up(a, m, b)
  local q = idiv(a, b)
  local r = a - q * b
  return q * m + ceildiv(r * m, b)
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

-- Expire key `k` when its state decides like a fresh one (`idle` nanoseconds from now).
-- With an injected time (tests, replays) Redis's own expiry clock does not follow it, so
-- the key is kept 10 s longer rather than dropped while still meaningful.
local function expire_key(k, idle)
  if idle <= 0 then
    redis.call('DEL', k)
  else
    local ms = ceildiv(idle, 1000000)
    if injected then
      ms = ms + 10000
    end
    redis.call('PEXPIRE', k, fmt(ms))
  end
end

local function expire(idle)
  expire_key(key, idle)
end

-- A duration for the reply: -1 stands for "never" (u64::MAX nanoseconds).
local function out(d)
  if d >= MAX_EXACT then
    return -1
  end
  return d
end
