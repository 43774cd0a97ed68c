--[[
  Issue a chunk of permits, atomically: for each plan, unless its permit already exists,
  write the permit hash (core fields, plugin fields, config_id) with its TTL and append the
  same fields, in the same order, to the permit stream; then acknowledge every plan written
  or found, with one XACK.

  The stream entry is the durable record of the decision (SPEC 8): it outlives the permit
  hash, so it carries everything the hash does: the core fields, every plugin field of the
  permit and the config_id of the configuration that decided it (its snapshot is
  quantum:config:snapshot:<config_id>). A plan's checks come before its first write, so a
  refused plan leaves nothing behind (a permit written but not announced would be taken
  for a duplicate on retry).

    Input:
      KEYS[1] permit stream (quantum:stream:permit.issued)
      KEYS[2] plan stream (quantum:stream:apply.plan)
      KEYS[3..] one permit hash per plan (quantum:permit:<plan_id>)

      ARGV[1] consumer group of the plan stream
      ARGV[2] permit TTL, seconds
      ARGV[3] permit stream maxlen (approximate: MAXLEN ~)
      ARGV[4] config_id, the same for every plan of the call (written as the last field)
      ARGV[5] ncore: the number of core fields (at least 1)
      ARGV[6 .. 5+ncore] the core field names, in order
      then nlayouts: the number of distinct lists of plugin field names
      then each layout: count, then that many field names
      then nsets: the number of distinct sets of plugin field values
      then each set: its layout (1-based index), then one value per name of the layout
      then per plan, in KEYS[3..] order: entry id, set index (0 = no plugin fields, else
        the 1-based index of a set), then the ncore core values

    Names travel once per layout and values once per set: with plans over many symbols
    nearly every plan has a set of its own, and its names would otherwise be sent (and
    made Lua strings) again for each. A set's values are read from ARGV where they are,
    not copied into a table of their own.

    Output:
      an array, one element per plan:
        1  permit written and announced, plan acknowledged
        0  permit already existed: plan acknowledged only, nothing written
        an error reply "<Redis's refusal> (<permit key> is a <type>, <permit stream> is a
           <type>)" when the write was refused (WRONGTYPE when either key has another
           type, Redis's own message otherwise, e.g. OOM): nothing written, plan not
           acknowledged
]]
local group, ttl, maxlen, config_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ncore = tonumber(ARGV[5])
local fields = {}  -- reused for every plan: names stay, values are overwritten
for f = 1, ncore do fields[2 * f - 1] = ARGV[5 + f] end
local layouts, at = {}, 7 + ncore
for l = 1, tonumber(ARGV[6 + ncore]) do
  local count = tonumber(ARGV[at])
  layouts[l] = {unpack(ARGV, at + 1, at + count)}
  at = at + 1 + count
end
local set_names, set_start = {}, {}  -- a set's layout, and where its values start - 1
for s = 1, tonumber(ARGV[at]) do
  local names = layouts[tonumber(ARGV[at + 1])]
  set_names[s], set_start[s] = names, at + 1
  at = at + 1 + #names
end
at = at + 1
local placed = nil  -- the layout whose names are in `fields` after the core fields
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
    -- Redis's own refusal (e.g. OOM) when HSETNX ran; WRONGTYPE when the stream has
    -- another type and nothing ran. The key types follow in parentheses.
    local cause = type(created) == 'table' and created.err or 'WRONGTYPE'
    local permit_type = redis.call('TYPE', key).ok
    results[p - 2] = redis.error_reply(cause .. ' (' .. key .. ' is a ' .. permit_type
                                       .. ', ' .. KEYS[1] .. ' is a ' .. stream_type .. ')')
  else
    local n = 2 * ncore
    if set > 0 then
      local names, start = set_names[set], set_start[set]
      if names ~= placed then
        for i = 1, #names do fields[n + 2 * i - 1] = names[i] end
        placed = names
      end
      for i = 1, #names do fields[n + 2 * i] = ARGV[start + i] end
      n = n + 2 * #names
    else
      placed = nil  -- config_id goes where the plugin names were
    end
    fields[n + 1], fields[n + 2] = 'config_id', config_id
    n = n + 2
    redis.call('HSET', key, unpack(fields, 3, n))
    redis.call('EXPIRE', key, ttl)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields, 1, n))
    acks[#acks + 1] = entry
    stream_type = 'stream'
    results[p - 2] = 1
  end
end
if #acks > 0 then
  redis.call('XACK', KEYS[2], group, unpack(acks))
end
return results
