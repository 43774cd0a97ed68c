--[[
  Issue a chunk of permits, atomically: for each plan, unless its permit already exists,
  write the permit hash (core and plugin fields) with its TTL and append the core fields
  to the permit stream; then acknowledge every plan written or found, with one XACK.

  The stream entry leaves the plugin fields out: the stream is the durable record of the
  decision, which plugins never change. A plan's checks come before its first write, so a
  refused plan leaves nothing behind (a permit written but not announced would be taken
  for a duplicate on retry).

    Input:
      KEYS[1] permit stream (quantum:stream:permit.issued)
      KEYS[2] plan stream (quantum:stream:apply.plan)
      KEYS[3..] one permit hash per plan (quantum:permit:<plan_id>)

      ARGV[1] consumer group of the plan stream
      ARGV[2] permit TTL, seconds
      ARGV[3] permit stream maxlen (approximate: MAXLEN ~)
      ARGV[4] ncore: the number of core fields (at least 1)
      ARGV[5 .. 4+ncore] the core field names, in order
      then nsets: the number of distinct plugin field sets
      then each set: count, name, value, name, value, ... (count = the number of name
        and value arguments that follow)
      then per plan, in KEYS[3..] order: entry id, set index (0 = no plugin fields, else
        the 1-based index of a set), then the ncore core values

    Output:
      an array, one element per plan:
        1  permit written and announced, plan acknowledged
        0  permit already existed: plan acknowledged only, nothing written
        an error reply "WRONGTYPE <permit key> is a <type>, <permit stream> is a <type>"
           when either key has another type: nothing written, plan not acknowledged
]]
local group, ttl, maxlen = ARGV[1], ARGV[2], ARGV[3]
local ncore = tonumber(ARGV[4])
local fields = {}  -- reused for every plan: names stay, values are overwritten
for f = 1, ncore do fields[2 * f - 1] = ARGV[4 + f] end
local sets, at = {}, 6 + ncore
for s = 1, tonumber(ARGV[5 + ncore]) do
  local n = tonumber(ARGV[at])
  sets[s] = {unpack(ARGV, at + 1, at + n)}
  at = at + 1 + n
end
local stream_type = redis.call('TYPE', KEYS[1]).ok
local stream_ok = stream_type == 'none' or stream_type == 'stream'
local results, acks = {}, {}
for p = 3, #KEYS do
  local key, entry, set = KEYS[p], ARGV[at], tonumber(ARGV[at + 1])
  for f = 1, ncore do fields[2 * f] = ARGV[at + 1 + f] end
  at = at + 2 + ncore
  -- HSETNX creates the permit with its first field, or finds it (duplicate), or fails
  -- on a key of another type: one call for the check and the first write.
  local created = stream_ok and redis.pcall('HSETNX', key, fields[1], fields[2])
  if created == 0 then
    acks[#acks + 1] = entry
    results[p - 2] = 0
  elseif created ~= 1 then
    local permit_type = redis.call('TYPE', key).ok
    results[p - 2] = redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. permit_type
                                       .. ', ' .. KEYS[1] .. ' is a ' .. stream_type)
  else
    local n = 2 * ncore
    if set > 0 then
      local extra = sets[set]
      for i = 1, #extra do fields[n + i] = extra[i] end
      n = n + #extra
    end
    redis.call('HSET', key, unpack(fields, 3, n))
    redis.call('EXPIRE', key, ttl)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields, 1, 2 * ncore))
    acks[#acks + 1] = entry
    stream_type = 'stream'
    results[p - 2] = 1
  end
end
if #acks > 0 then
  redis.call('XACK', KEYS[2], group, unpack(acks))
end
return results
