-- Inside a simulated node (zmesh run): node.start, nr.apply of the NR
-- config in file ARG[1] and container.attach of namespace ARG[2] at
-- address ARG[3], as the daemon's writer runs them (modules loaded, one
-- process); prints the milliseconds of each step and of all three as JSON.
local container = require "zmesh.container"
local context = require "zmesh.node.context"
local json = require "zmesh.json"
local node = require "zmesh.node"
local nr = require "zmesh.nr"
local uv = require "luv"

local cfg = assert(json.read_file(arg[1]))
local function ms(t0) return (uv.hrtime() - t0) / 1e6 end

local t0 = uv.hrtime()
local ctx = context.load({})
node.start(ctx)
local t1 = uv.hrtime()
nr.apply(ctx, cfg)
local t2 = uv.hrtime()
container.attach(ctx, { net_id = cfg.net_id, netns = arg[2], ip = arg[3], create = true })
local t3 = uv.hrtime()
print(json.encode({ start = (t1 - t0) / 1e6, apply = (t2 - t1) / 1e6, attach = (t3 - t2) / 1e6,
  total = ms(t0) }))
