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

-- {net_id}: every other NR of each NR's network (or of NET_ID's):
-- reachable, round trip, path.
function entries.check(params)
  local ctx = ctx_of(params, { "net_id" })
  check.string(params, "net_id", true)
  local report = require("zmesh.node.check").run(ctx, params.net_id)
  for _, nr in ipairs(report) do
    nr.peers = json.object(nr.peers)
    if nr.standby then nr.standby = json.object(nr.standby) end
  end
  return json.array(report)
end

-- {skip = [net_id…]}: converge the ndmz and every stored NR and attachment.
function entries.converge(params)
  local ctx = ctx_of(params, { "skip" })
  local skip = check.array(params, "skip", true)
  for i, id in ipairs(skip or {}) do
    if type(id) ~= "string" then check.fail(string.format("skip[%d]", i), id, "must be a net_id") end
  end
  local report = node.converge(ctx, { skip = skip })
  report.pending = json.array(report.pending)
  report.removed = json.array(report.removed or {})
  report.problems = json.array(report.problems)
  report.nrs, report.containers = json.object(report.nrs), json.object(report.containers)
  return report
end

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
  converge = "converge the ndmz and every stored NR and container attachment (boot restore, repairs)",
  check = "every NR's reachability of every other NR of its network: RTT and path ({net_id})",
  facts = "what this node publishes: id, public key for sealing, uplink addresses, port range",
  status = "the ndmz and the NRs of this node",
  plan = "the changes node.start would make, changing nothing",
}

return entries
