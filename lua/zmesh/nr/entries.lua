-- nr.* entry points: provisioning hands this node an NR config.
local check = require "zmesh.check"
local context = require "zmesh.node.context"
local json = require "zmesh.json"
local names = require "zmesh.node.names"
local nr = require "zmesh.nr"
local nr_config = require "zmesh.nr.config"

local entries = {}

-- The node config comes from $ZMESH_NODE_CONFIG or /etc/zmesh/node.json;
-- PARAMS is the NR config itself, checked before the node is looked at.
local function split(params)
  local valid = nr_config.validate(params)
  return context.load(), params, valid
end

local function with_net_id(params, extra)
  local allowed = { "net_id" }
  for _, k in ipairs(extra or {}) do allowed[#allowed + 1] = k end
  check.known_fields(params, allowed)
  if not names.valid_net_id(params.net_id) then
    check.fail("net_id", params.net_id, "must be 1..12 of a-z 0-9")
  end
  return context.load()
end

function entries.apply(params)
  local ctx, raw, valid = split(params)
  return nr.apply(ctx, raw, valid)
end

function entries.plan(params)
  local ctx, raw, valid = split(params)
  return { changes = json.array(nr.plan(ctx, raw, valid)) }
end

-- {net_id, dry_run}: dry_run gives the plan of the removal instead.
function entries.remove(params)
  local ctx = with_net_id(params, { "dry_run" })
  check.boolean(params, "dry_run", true)
  if params.dry_run then
    return { net_id = params.net_id, changes = json.array(nr.plan_remove(ctx, params.net_id)) }
  end
  local removed, changes = nr.remove(ctx, params.net_id)
  return { net_id = params.net_id, removed = removed, changes = json.array(changes) }
end

-- {net_id, choice}: what the daemon's failover engine decided.
function entries.failover(params)
  local ctx = with_net_id(params, { "choice" })
  return nr.failover(ctx, params.net_id, params.choice)
end

function entries.list(params)
  check.known_fields(params, {})
  local ctx = context.load()
  return json.array(nr.list(ctx))
end

function entries.status(params)
  local ctx = with_net_id(params)
  return nr.status(ctx, params.net_id)
end

function entries.check(params)
  check.known_fields(params, {})
  local ctx = context.load()
  return nr.check(ctx)
end

entries.describe = {
  apply = "converge this node's NR to the given NR config (JSON as rendered by `zmesh net render`)",
  plan = "print the changes nr.apply would make for the given NR config, changing nothing",
  remove = "remove the NR {net_id} with its WireGuard daemon and namespace ({dry_run = true}: the plan only)",
  list = "the NRs applied on this node and whether they are up",
  failover = "store the daemon's failover choice {net_id, choice} and re-apply the NR with it",
  status = "WireGuard peers, links, addresses and routes of the NR {net_id}",
  check = "restart every NR whose WireGuard no longer answers, from its saved config; remove what an interrupted first apply left",
}

return entries
