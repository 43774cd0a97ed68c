--[[
  Dead-letter a plan, atomically: append its dead letter to the capped dead-letter stream
  and acknowledge the plan.

    Input:
      KEYS[1] dead-letter stream (quantum:stream:apply.plan.dead)
      KEYS[2] plan stream (quantum:stream:apply.plan)

      ARGV[1] consumer group of the plan stream
      ARGV[2] the plan's entry id
      ARGV[3] dead-letter stream maxlen (approximate: MAXLEN ~)
      ARGV[4..] the dead letter's fields: name, value, name, value, ...

    Output:
      1; or, when Redis refuses the XADD, an error reply with Redis's own message (its
      code first: OOM, WRONGTYPE, READONLY...) followed by " (<dead-letter stream> is a
      <type>)", and then the plan is not acknowledged (it stays pending, to be retried)
]]
local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
if type(added) == 'table' and added.err then
  local kind = redis.call('TYPE', KEYS[1]).ok
  return redis.error_reply(added.err .. ' (' .. KEYS[1] .. ' is a ' .. kind .. ')')
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return 1
