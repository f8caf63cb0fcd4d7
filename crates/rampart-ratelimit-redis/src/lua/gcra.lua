-- GCRA. param(1) interval, param(2) tolerance, param(3) burst. State: the theoretical
-- arrival time as fields s, n.
local interval = param(1)
local tolerance = param(2)
local burst = param(3)
local v = redis.call('HMGET', key, 's', 'n')
local tat = 0
if v[1] then
  tat = rel(v[1], v[2])
end
local new_tat = math.max(tat, 0) + interval * cost
local allow_at = new_tat - (tolerance + interval)
if allow_at <= 0 then
  local s, n = at(new_tat)
  redis.call('HSET', key, 's', s, 'n', n)
  expire(new_tat)
  local used = ceildiv(new_tat, interval)
  return {0, math.max(burst - used, 0), out(new_tat)}
end
if count_rejected then
  local s, n = at(new_tat)
  redis.call('HSET', key, 's', s, 'n', n)
  expire(new_tat)
end
return {2, out(allow_at), 0}
