"""
The Lua scripts of the cluster outbox (the key layout is L{ocppproxy.core.outbox_streams}'s).
Each runs atomically in Redis: a group of operations and the bounds in one call, a
station's drain facts and learnt ids, a page of one of its streams, the stations with a
backlog and no claim found, an absent station claimed only if nobody holds it. Large
replies are one JSON string (one bulk reply: txredisapi reads many small elements
slowly).

The scripts build key names from station ids, so they need a single Redis (not Redis
Cluster), as the rest of cluster mode does.
"""

_COMMON = """
local PREFIX = 'ocppproxy:outbox:'
local BACKLOGS = 'ocppproxy:outbox-backlogs'
local BYTES = 'ocppproxy:outbox-bytes'
local function stream(st, up) return PREFIX .. st .. ':' .. up end
local function seqs(st, up) return 'ocppproxy:outbox-seqs:' .. st .. ':' .. up end
local function txs(st, up) return 'ocppproxy:outbox-tx:' .. st .. ':' .. up end
local function ms(id) return tonumber(string.match(id, '^(%d+)')) end
"""

APPLY_SCRIPT = _COMMON + """
-- ARGV: max_bytes, max_age (ms), then the operations (ocppproxy.core.outbox_streams.encode_operations).
local max_bytes = tonumber(ARGV[1])
local max_age = tonumber(ARGV[2])
local touched = {}
local function settle(st, up)
  local first = redis.call('XRANGE', stream(st, up), '-', '+', 'COUNT', 1)
  if #first == 0 then
    redis.call('ZREM', BACKLOGS, up .. ' ' .. st)
    redis.call('DEL', stream(st, up), seqs(st, up))
    redis.call('SREM', 'ocppproxy:outbox-upstreams:' .. st, up)
  else
    redis.call('ZADD', BACKLOGS, ms(first[1][1]), up .. ' ' .. st)
  end
end
local function remove(st, up, seq)
  local value = redis.call('HGET', seqs(st, up), seq)
  if not value then return 0 end
  local id, size = string.match(value, '^(%S+) (%d+)')
  redis.call('XDEL', stream(st, up), id)
  redis.call('HDEL', seqs(st, up), seq)
  redis.call('DECRBY', BYTES, size)
  return tonumber(size)
end
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'P' then
    local st, up, seq = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    if redis.call('HEXISTS', seqs(st, up), seq) == 0 then
      local payload = ARGV[i + 7]
      local id = redis.call('XADD', stream(st, up), '*', 'seq', seq, 'mid', ARGV[i + 4], 'action', ARGV[i + 5],
        'kind', ARGV[i + 6], 'payload', payload, 'at', ARGV[i + 8])
      local value = id .. ' ' .. #payload
      if ARGV[i + 9] ~= '' then value = value .. ' ' .. ARGV[i + 9] end
      redis.call('HSET', seqs(st, up), seq, value)
      redis.call('INCRBY', BYTES, #payload)
      redis.call('ZADD', BACKLOGS, 'NX', ms(id), up .. ' ' .. st)
      redis.call('SADD', 'ocppproxy:outbox-upstreams:' .. st, up)
    end
    i = i + 10
  elseif op == 'D' then
    if remove(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]) > 0 then touched[ARGV[i + 2] .. ' ' .. ARGV[i + 1]] = {ARGV[i + 1], ARGV[i + 2]} end
    i = i + 4
  elseif op == 'S' then
    local value = redis.call('HGET', seqs(ARGV[i + 1], ARGV[i + 2]), ARGV[i + 3])
    if value then
      local id, size = string.match(value, '^(%S+) (%d+)')
      redis.call('HSET', seqs(ARGV[i + 1], ARGV[i + 2]), ARGV[i + 3], id .. ' ' .. size .. ' ' .. ARGV[i + 4])
    end
    i = i + 5
  elseif op == 'O' then
    redis.call('HSET', txs(ARGV[i + 1], ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4])
    redis.call('PEXPIRE', txs(ARGV[i + 1], ARGV[i + 2]), math.floor(max_age))
    i = i + 5
  elseif op == 'F' then
    -- An instance that has not seen the station's BootNotification (or subprotocol) keeps the one known.
    local facts = 'ocppproxy:outbox-station:' .. ARGV[i + 1]
    if ARGV[i + 2] ~= '' then redis.call('HSET', facts, 'subprotocol', ARGV[i + 2]) end
    if ARGV[i + 3] ~= '' then redis.call('HSET', facts, 'boot', ARGV[i + 3]) end
    redis.call('HSET', facts, 'auth', ARGV[i + 4])
    i = i + 5
  else
    return redis.error_reply('unknown outbox operation ' .. tostring(op))
  end
end
for _, pair in pairs(touched) do settle(pair[1], pair[2]) end
-- The bounds: max_age by XTRIM MINID, then max_bytes by the oldest entries.
local dropped = {}
local budget = 10000
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age
for _, member in ipairs(redis.call('ZRANGEBYSCORE', BACKLOGS, '-inf', '(' .. cutoff, 'LIMIT', 0, 100)) do
  if budget <= 0 then break end
  local up, st = string.match(member, '^(%S+) (.*)$')
  local limit = budget
  local old = redis.call('XRANGE', stream(st, up), '-', '(' .. cutoff .. '-0', 'COUNT', limit)
  for _, item in ipairs(old) do
    local seq = item[2][2]
    local value = redis.call('HGET', seqs(st, up), seq)
    if value then
      redis.call('DECRBY', BYTES, string.match(value, '^%S+ (%d+)'))
      redis.call('HDEL', seqs(st, up), seq)
    end
    dropped[#dropped + 1] = st
    dropped[#dropped + 1] = up
    dropped[#dropped + 1] = seq
    budget = budget - 1
  end
  if #old < limit then
    redis.call('XTRIM', stream(st, up), 'MINID', cutoff)
  else
    for _, item in ipairs(old) do redis.call('XDEL', stream(st, up), item[1]) end
  end
  settle(st, up)
end
local total = tonumber(redis.call('GET', BYTES) or '0')
while total > max_bytes and budget > 0 do
  local oldest = redis.call('ZRANGE', BACKLOGS, 0, 0)
  if #oldest == 0 then
    redis.call('SET', BYTES, 0)
    break
  end
  local up, st = string.match(oldest[1], '^(%S+) (.*)$')
  for _, item in ipairs(redis.call('XRANGE', stream(st, up), '-', '+', 'COUNT', 64)) do
    if total <= max_bytes then break end
    local seq = item[2][2]
    local size = remove(st, up, seq)
    if size == 0 then redis.call('XDEL', stream(st, up), item[1]) end
    total = total - size
    dropped[#dropped + 1] = st
    dropped[#dropped + 1] = up
    dropped[#dropped + 1] = seq
    budget = budget - 1
  end
  settle(st, up)
end
if #dropped == 0 then return '' end
return cjson.encode(dropped)
"""

STATION_SCRIPT = _COMMON + """
-- ARGV[1]: the station. Returns, as JSON, its drain facts, its upstreams with a stream and the ids learnt.
local st = ARGV[1]
local facts = redis.call('HMGET', 'ocppproxy:outbox-station:' .. st, 'subprotocol', 'boot', 'auth')
for i = 1, 3 do if not facts[i] then facts[i] = '' end end
local ups, ids = {}, {}
for _, up in ipairs(redis.call('SMEMBERS', 'ocppproxy:outbox-upstreams:' .. st)) do
  ups[#ups + 1] = up
end
for _, up in ipairs(ups) do ids[#ids + 1] = {up, redis.call('HGETALL', txs(st, up))} end
return cjson.encode({facts, ups, ids})
"""

PAGE_SCRIPT = _COMMON + """
-- ARGV: station, upstream, the stream id to read after ('-': from the start), at most this many entries.
-- Returns, as JSON, [[id, seq, message id, action, kind, payload, written at, station's transaction id], ...].
local st, up = ARGV[1], ARGV[2]
local start = ARGV[3] == '-' and '-' or '(' .. ARGV[3]
local out = {}
for _, item in ipairs(redis.call('XRANGE', stream(st, up), start, '+', 'COUNT', tonumber(ARGV[4]))) do
  local f = item[2]
  local tx = ''
  if f[6] == 'StartTransaction' then
    local value = redis.call('HGET', seqs(st, up), f[2])
    tx = value and string.match(value, '^%S+ %d+ (%S+)') or ''
  end
  out[#out + 1] = {item[1], f[2], f[4], f[6], f[8], f[10], f[12], tx}
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""

ABSENT_SCRIPT = _COMMON + """
-- ARGV: at most this many stations, the rank in the backlogs to look from, how many backlogs to look at.
-- Returns, as JSON, [the stations with a backlog that no instance claims (oldest first), the rank to look
-- from next time (0: start again)].
local found, seen = {}, {}
local from, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local members = redis.call('ZRANGE', BACKLOGS, from, from + window - 1)
for _, member in ipairs(members) do
  local st = string.match(member, '^%S+ (.*)$')
  if not seen[st] then
    seen[st] = true
    if redis.call('EXISTS', 'ocppproxy:station:' .. st) == 0 then
      found[#found + 1] = st
      if #found >= tonumber(ARGV[1]) then break end
    end
  end
end
local next = 0
if #members == window then next = from + window end
if #found == 0 then return cjson.encode({{}, next}) end
return cjson.encode({found, next})
"""

# Number a claim and store it with a TTL (KEYS[1] the station's key, KEYS[2] the order's; ARGV
# instance, serial, TTL). The number is Redis's clock in microseconds, kept above the last one
# given: it grows across a Redis restart too. Leaves the claim's value in `value`.
CLAIM_STORE = """
local now = redis.call('TIME')
local order = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if order <= last then
  order = last + 1
end
order = string.format('%.0f', order)
redis.call('SET', KEYS[2], order)
local value = order .. ' ' .. ARGV[1] .. ' ' .. ARGV[2]
redis.call('SET', KEYS[1], value, 'EX', ARGV[3])
"""

# ocppproxy.cluster.service.CLAIM_SCRIPT, only if nobody claims the station (a drain never replaces anyone),
# and not announced: nobody holds a connection to close, and the notifier of the instance the station left
# must not take the drain for the station moving there (it would hold back its disconnection alert).
CLAIM_IF_FREE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
""" + CLAIM_STORE + """return order
"""
