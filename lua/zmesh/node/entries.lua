-- node.* entry points. Each takes an optional {config = path}.
local check = require "zmesh.check"
local context = require "zmesh.node.context"
local json = require "zmesh.json"
local node = require "zmesh.node"

local entries = {}

local function ctx_of(params, extra)
  local allowed = { "config" }
  for _, k in ipairs(extra or {}) do allowed[#allowed + 1] = k end
  check.known_fields(params, allowed)
  return context.load(params)
end

function entries.start(params) return node.start(ctx_of(params)) end

-- {dry_run = true}: the plan of the stop instead.
function entries.stop(params)
  local ctx = ctx_of(params, { "dry_run" })
  if check.boolean(params, "dry_run", true) then
    return { changes = json.array(node.plan_stop(ctx)) }
  end
  local res = node.stop(ctx)
  res.nrs_removed, res.changes = json.array(res.nrs_removed), json.array(res.changes)
  return res
end
function entries.facts(params) return node.facts(ctx_of(params)) end
function entries.status(params) return node.status(ctx_of(params)) end
function entries.plan(params) return { changes = json.array(node.plan(ctx_of(params))) } end

entries.describe = {
  start = "bring up the ndmz (uplink, bridge to the NRs) and make the node key on first start",
  stop = "remove every NR and the ndmz ({dry_run = true}: the plan only)",
  facts = "what this node publishes: id, public key for sealing, uplink addresses, port range",
  status = "the ndmz and the NRs of this node",
  plan = "the changes node.start would make, changing nothing",
}

return entries
