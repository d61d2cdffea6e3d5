-- This node: bring up the ndmz, publish its facts, stop everything.
-- The Lua API behind the node.* entry points.
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local ndmz = require "zmesh.node.ndmz"
local names = require "zmesh.node.names"
local nr = require "zmesh.nr"
local reconcile = require "zmesh.reconcile"

local node = {}

local function ndmz_opts() return { own_routes = { names.NDMZ } } end

-- The ndmz's desired state, its firewall from the policy. The whole
-- WireGuard port range is open, so that NRs come and go without touching
-- the ndmz.
function node.desired(ctx)
  local rules = context.firewall(ctx, "ndmz", { uplink = names.UPLINK, bridge = names.TONRS,
    range = names.NR_UPLINK_RANGE, wg_port_range = ctx.cfg.listen_ports })
  return ndmz.desired(ctx.cfg, { firewall = rules,
    firewall_record = ctx.firewall_dir .. "/" .. names.NDMZ .. ".json" })
end

function node.plan(ctx)
  return reconcile.plan(core, node.desired(ctx), ndmz_opts())
end

-- Converge the ndmz and make the node key on first start.
function node.start(ctx)
  local key = context.ensure_node_key(ctx)
  local public = key:public()
  key:close()
  assert(core.fs.mkdir(ctx.cfg.run_dir, tonumber("755", 8)))
  local report = reconcile.apply(core, node.desired(ctx), ndmz_opts())
  if not report.ok then
    error(string.format("node start failed at '%s': %s", report.failed, tostring(report.error)), 0)
  end
  return { node_id = ctx.cfg.node_id, public_key = public, changes = report.done }
end

-- What the node publishes for users to build on (network tool input).
function node.facts(ctx)
  local key, err = context.node_key(ctx)
  if not key then error(err, 0) end
  local public = key:public()
  key:close()
  local addresses = {}
  if core.netns.exists(names.NDMZ) then
    for _, a in ipairs(core.addr.dump(names.NDMZ, names.UPLINK) or {}) do
      if a.scope == "global" then addresses[#addresses + 1] = a.addr end
    end
  else
    for i, a in ipairs(ctx.cfg.uplink.addresses) do addresses[i] = a end
  end
  table.sort(addresses)
  return {
    node_id = ctx.cfg.node_id,
    public_key = public,
    addresses = addresses,
    listen_ports = ctx.cfg.listen_ports,
    force_role = ctx.cfg.force_role,
    public_endpoints = ctx.cfg.public_endpoints,
  }
end

-- Remove every NR (saved or found) and the ndmz. A moved NIC goes back to
-- the host under its own name.
function node.stop(ctx)
  local removed = {}
  local ids = {}
  for id in pairs(context.saved_nrs(ctx)) do ids[id] = true end
  for _, ns in ipairs(core.netns.list() or {}) do
    local id = ns:match("^n%-([a-z0-9]+)$")
    if id then ids[id] = true end
  end
  for id in pairs(ids) do
    nr.remove(ctx, id)
    removed[#removed + 1] = id
  end
  table.sort(removed)
  local stopped = false
  if core.netns.exists(names.NDMZ) then
    local u = ctx.cfg.uplink
    if u.mode == "move" and core.link.get(names.NDMZ, names.UPLINK) then
      local host <close> = assert(core.netns.open())
      assert(core.link.set { ns = names.NDMZ, name = names.UPLINK, up = false })
      assert(core.link.set { ns = names.NDMZ, name = names.UPLINK, netns = host, rename = u.nic })
    end
    local ok, err = core.netns.delete(names.NDMZ)
    if not ok then error(err, 0) end
    os.remove(ctx.firewall_dir .. "/" .. names.NDMZ .. ".json")
    stopped = true
  end
  return { nrs_removed = removed, ndmz_removed = stopped }
end

function node.status(ctx)
  local up = core.netns.exists(names.NDMZ)
  return {
    node_id = ctx.cfg.node_id,
    ndmz = up and { links = core.link.dump(names.NDMZ), addresses = core.addr.dump(names.NDMZ),
      routes = core.route.dump(names.NDMZ) } or false,
    nrs = nr.list(ctx),
  }
end

return node
