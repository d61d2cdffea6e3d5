-- This node: bring up the ndmz, publish its facts, stop everything.
-- The Lua API behind the node.* entry points.
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local lock = require "zmesh.node.lock"
local ndmz = require "zmesh.node.ndmz"
local names = require "zmesh.node.names"
local nr = require "zmesh.nr"
local reconcile = require "zmesh.reconcile"
local resources = require "zmesh.reconcile.resources"
local store = require "zmesh.node.store"

local node = {}

local function ndmz_opts() return { own_routes = { names.NDMZ } } end

-- The ndmz's desired state, its firewall from the policy. The whole
-- WireGuard port range is open, so that NRs come and go without touching
-- the ndmz.
function node.desired(ctx)
  local rules = context.firewall(ctx, "ndmz", { uplink = names.UPLINK, bridge = names.TONRS,
    range = names.NR_UPLINK_RANGE, wg_port_range = ctx.cfg.listen_ports })
  return ndmz.desired(ctx.cfg, { firewall = rules })
end

function node.plan(ctx)
  return reconcile.plan(core, node.desired(ctx), ndmz_opts())
end

-- Converge the ndmz and make the node key on first start.
function node.start(ctx)
  return lock.hold(ctx, function()
    local key = context.ensure_node_key(ctx)
    local public = key:public()
    key:close()
    local report = reconcile.apply(core, node.desired(ctx), ndmz_opts())
    if not report.ok then
      error(string.format("node start failed at '%s': %s", report.failed, tostring(report.error)), 0)
    end
    store.remove(context.stopped_file(ctx))
    return { node_id = ctx.cfg.node_id, public_key = public, changes = report.done }
  end)
end

-- What the node publishes for users to build on (network tool input).
function node.facts(ctx)
  local key, err = context.node_key(ctx)
  if not key then error(err, 0) end
  local public = key:public()
  key:close()
  -- The addresses as configured and learnt (DHCP, RA), not as read from
  -- the ndmz: read while the daemon's boot restore is still building the
  -- ndmz, the kernel would say there are none.
  local up = ndmz.uplink(ctx.cfg)
  local addresses, seen, mtu = {}, {}, up.mtu
  for _, a in ipairs(up.addresses) do
    if not seen[a] then seen[a], addresses[#addresses + 1] = true, a end
  end
  table.sort(addresses)
  if not mtu and core.netns.exists(names.NDMZ) then
    local l = core.link.get(names.NDMZ, names.UPLINK)
    mtu = l and l.mtu
  end
  return {
    node_id = ctx.cfg.node_id,
    public_key = public,
    addresses = addresses,
    listen_ports = ctx.cfg.listen_ports,
    force_role = ctx.cfg.force_role,
    public_endpoints = ctx.cfg.public_endpoints,
    -- The uplink's MTU, when it is not Ethernet's: the network tool
    -- derives the WireGuard MTU of every path to this node from it.
    mtu = mtu ~= 1500 and mtu or nil,
  }
end

-- Everything the node made, as desired state that says "gone": every NR
-- (saved or found) and the ndmz. A moved NIC goes back to the host under
-- its own name (down, without addresses: they were the ndmz's).
function node.removal(ctx)
  local want, ids = {}, nr.known_ids(ctx)
  for _, id in ipairs(ids) do
    for _, r in ipairs(nr.removal(ctx, id)) do want[#want + 1] = r end
  end
  local u = ctx.cfg.uplink
  if u.mode == "move" then
    want[#want + 1] = { kind = "link", ns = resources.HOST, name = u.nic, type = "moved",
      from = names.UPLINK, from_ns = names.NDMZ, up = false, optional = true, keep_addrs = true }
  end
  want[#want + 1] = { kind = "netns", name = names.NDMZ, veths_first = true, absent = true }
  return want, ids
end

-- The changes node.stop would make, one line each.
function node.plan_stop(ctx)
  return reconcile.plan(core, (node.removal(ctx)))
end

-- Remove every NR and the ndmz.
function node.stop(ctx)
  return lock.hold(ctx, function()
    local ndmz_was = core.netns.exists(names.NDMZ)
    local want, ids = node.removal(ctx)
    local report = reconcile.apply(core, want)
    if not report.ok then
      error(string.format("node stop failed at '%s': %s", report.failed, tostring(report.error)), 0)
    end
    -- Stopped stays stopped: the daemon's converge does not start it again.
    assert(core.fs.mkdir(ctx.cfg.state_dir, tonumber("700", 8)))
    local ok, err = core.fs.write(context.stopped_file(ctx), "stopped by node.stop; node.start undoes it\n",
      tonumber("600", 8))
    if not ok then error(err, 0) end
    return { nrs_removed = ids, ndmz_removed = ndmz_was, changes = report.done }
  end)
end

-- Converge everything this node is to have: the ndmz, every stored NR,
-- every stored container attachment whose namespace exists (the others
-- are pending: applied once their namespace appears), and nothing more:
-- traces of an NR never stored (a first apply killed half-way) are
-- removed. The daemon's boot restore and its reconcile loop; `zmesh node
-- converge` by hand. Changes only what differs, so a converged node sees
-- no change at all.
-- OPTS.skip: NR ids to leave alone this time (the daemon backing off).
function node.converge(ctx, opts)
  local skip = {}
  for _, id in ipairs(opts and opts.skip or {}) do skip[id] = true end
  return lock.hold(ctx, function()
    local report = { nrs = {}, containers = {}, pending = {}, problems = ctx.problems }
    if core.fs.stat(context.stopped_file(ctx)) then
      report.stopped, report.ndmz = true, { changes = {} }
      return report
    end
    local ok, res = pcall(node.start, ctx)
    report.ndmz = ok and { changes = res.changes } or { error = tostring(res) }
    if not ok then return report end
    local container = require "zmesh.container"
    local saved = context.saved_nrs(ctx)
    local aside = context.set_aside(ctx)
    for _, line in ipairs(aside.lines) do report.problems[#report.problems + 1] = line end
    local ids = {}
    for id in pairs(saved) do ids[#ids + 1] = id end
    table.sort(ids)
    report.removed, report.unmanaged = {}, {}
    for _, id in ipairs(nr.known_ids(ctx)) do
      -- An NR whose stored config was found bad keeps running: the data
      -- plane does not depend on a file being readable.
      if not saved[id] and aside.nrs[id] then
        report.unmanaged[#report.unmanaged + 1] = id
      elseif not saved[id] then
        -- pcall gives ok, removed, changes; or false, the error.
        local ok_rm, first, changes = pcall(nr.remove, ctx, id)
        report.removed[#report.removed + 1] = ok_rm and { net_id = id, changes = changes }
          or { net_id = id, error = tostring(first) }
      end
    end
    for _, id in ipairs(ids) do
      if skip[id] then
        report.nrs[id] = { skipped = true }
      else
        local applied, r = pcall(nr.apply, ctx, saved[id])
        report.nrs[id] = applied and { changes = r.changes } or { error = tostring(r) }
        if applied then
          local records = context.attachments(ctx, id)
          local list = {}
          for netns in pairs(records) do list[#list + 1] = netns end
          table.sort(list)
          for _, netns in ipairs(list) do
            local rec = records[netns]
            local key = id .. "/" .. netns
            if r.containers and r.containers[netns] then
              -- The NR's apply converged it already.
              report.containers[key] = r.containers[netns]
            elseif core.netns.exists(netns) then
              local attached, a = pcall(container.attach, ctx,
                { net_id = id, netns = netns, ip = rec.ip, ip6 = rec.ip6 })
              report.containers[key] = attached and { changes = a.changes } or { error = tostring(a) }
            else
              report.pending[#report.pending + 1] = { net_id = id, netns = netns }
            end
          end
        end
      end
    end
    return report
  end)
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
