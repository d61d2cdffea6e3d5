-- node.* entry points. Each takes an optional {config = path}.
local context = require "zmesh.node.context"
local json = require "zmesh.json"
local node = require "zmesh.node"

local entries = {}

local function ctx_of(params)
  require("zmesh.check").known_fields(params, { "config" })
  return context.load(params)
end

function entries.start(params) return node.start(ctx_of(params)) end
function entries.stop(params) return node.stop(ctx_of(params)) end
function entries.facts(params) return node.facts(ctx_of(params)) end
function entries.status(params) return node.status(ctx_of(params)) end
function entries.plan(params) return { changes = json.array(node.plan(ctx_of(params))) } end

entries.describe = {
  start = "bring up the ndmz (uplink, bridge to the NRs) and make the node key on first start",
  stop = "remove every NR and the ndmz",
  facts = "what this node publishes: id, public key for sealing, uplink addresses, port range",
  status = "the ndmz and the NRs of this node",
  plan = "the changes node.start would make, changing nothing",
}

return entries
