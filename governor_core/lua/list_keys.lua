--[[
  List the keys matching a pattern inside Redis, in one round trip: KEYS, or a SCAN loop
  when KEYS is renamed away. Both walk the whole keyspace and block the server meanwhile;
  KEYS does it in one pass.

    Input:
      no KEYS

      ARGV[1] the key pattern (KEYS / SCAN MATCH syntax)
      ARGV[2] SCAN COUNT per step of the SCAN loop

    Output:
      an array of the matching key names, in no particular order (the SCAN loop may,
      as SCAN does, name a key twice if the keyspace is being rehashed)
]]
local ok, keys = pcall(redis.call, 'KEYS', ARGV[1])
if ok then return keys end
keys = {}
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', ARGV[2])
  cursor = page[1]
  for _, key in ipairs(page[2]) do keys[#keys + 1] = key end
until cursor == '0'
return keys
