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
      1; or the error of the XADD (e.g. WRONGTYPE), and then the plan is not acknowledged
]]
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return 1
