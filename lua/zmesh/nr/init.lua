-- Network resources on this node: apply an NR config, plan it, remove it,
-- list and inspect them. The Lua API behind the nr.* entry points.
local check = require "zmesh.check"
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local desired = require "zmesh.nr.desired"
local names = require "zmesh.node.names"
local nr_config = require "zmesh.nr.config"
local reconcile = require "zmesh.reconcile"
local uplink = require "zmesh.nr.uplink"

local nr = {}

-- Everything an NR needs from the node before its desired state can be
-- built; raises with a clear message when the node is not ready.
local function prepare(ctx, cfg)
  if not core.netns.exists(names.NDMZ) then
    error("the ndmz is not up on this node: run node.start first", 0)
  end
  local ports = ctx.cfg.listen_ports
  if cfg.listen_port < ports.min or cfg.listen_port > ports.max then
    check.fail("wireguard_listen_port", cfg.listen_port,
      string.format("outside this node's range %d..%d", ports.min, ports.max))
  end
  for id, other in pairs(context.saved_nrs(ctx)) do
    if id ~= cfg.net_id and other.wireguard_listen_port == cfg.listen_port then
      check.fail("wireguard_listen_port", cfg.listen_port, "already used by NR " .. id)
    end
  end
  local node_key = assert(context.node_key(ctx))
  local key = core.key.open_sealed(cfg.sealed_private_key, node_key)
  node_key:close()
  if not key then
    check.fail("wireguard_private_key", nil, "does not open with this node's key (sealed for another node?)")
  end
  local public = key:public()
  if cfg.public_key and cfg.public_key ~= public then
    key:close()
    check.fail("wireguard_public_key", cfg.public_key, "does not match the sealed private key")
  end
  local ns = names.nr_ns(cfg.net_id)
  local rules = context.firewall(ctx, "nr", { uplink = names.UPLINK, range = cfg.ip_range,
    range6 = cfg.ipv6_range, wg = names.wg_if(cfg.net_id), bridge = names.bridge_if(cfg.net_id) })
  return {
    firewall = rules,
    firewall_record = ctx.firewall_dir .. "/" .. ns .. ".json",
    uplink_addr = uplink.allocate(core, cfg.net_id),
    private_key = key,
    public_key = public,
    backend = ctx.cfg.wireguard_backend,
    log = ctx.log_dir .. "/" .. names.wg_if(cfg.net_id) .. ".log",
  }
end

local function desired_of(ctx, raw)
  local cfg = nr_config.validate(raw)
  local prep = prepare(ctx, cfg)
  return cfg, desired.nr(cfg, prep), { own_routes = desired.nr_owned_routes(cfg) }, prep
end

-- The plan for RAW (an NR config table): one line per change.
function nr.plan(ctx, raw)
  local _, want, opts, prep = desired_of(ctx, raw)
  local lines = reconcile.plan(core, want, opts)
  prep.private_key:close()
  return lines
end

-- Remove NET_ID's NR: its daemon, namespace (and with it the uplink veth)
-- and saved config. Returns true when something was there.
function nr.remove(ctx, net_id)
  if not names.valid_net_id(net_id) then check.fail("net_id", net_id, "must be 1..12 of a-z 0-9") end
  local ns, wg = names.nr_ns(net_id), names.wg_if(net_id)
  local existed = core.netns.exists(ns)
  -- A userspace daemon lives in the ndmz: deleting the NR would not end it.
  if core.wg.pid(wg) or (existed and core.link.get(ns, wg)) then
    local ok, err = core.wg.delete { ns = existed and ns or nil, name = wg }
    if not ok and existed then error(err, 0) end
  end
  if existed then
    local ok, err = core.netns.delete(ns)
    if not ok then error(err, 0) end
  end
  context.forget_nr(ctx, net_id)
  os.remove(ctx.firewall_dir .. "/" .. ns .. ".json")
  return existed
end

-- Converge this node's NR to RAW. On failure, an NR that did not exist
-- before is removed again; an existing one is left for the next apply to
-- converge from.
function nr.apply(ctx, raw)
  local cfg, want, opts, prep = desired_of(ctx, raw)
  local existed = core.netns.exists(names.nr_ns(cfg.net_id))
  assert(core.fs.mkdir(ctx.log_dir, tonumber("700", 8)))
  local report = reconcile.apply(core, want, opts)
  prep.private_key:close()
  if not report.ok then
    local rolled = ""
    if not existed then
      pcall(nr.remove, ctx, cfg.net_id)
      rolled = " (rolled back)"
    end
    error(string.format("apply failed at '%s': %s%s", report.failed, tostring(report.error), rolled), 0)
  end
  context.save_nr(ctx, raw)
  return {
    net_id = cfg.net_id,
    namespace = names.nr_ns(cfg.net_id),
    interface = names.wg_if(cfg.net_id),
    public_key = prep.public_key,
    mesh_address = cfg.mesh_address,
    uplink_address = prep.uplink_addr,
    changes = report.done,
  }
end

-- Saved NRs with whether their namespace and WireGuard are alive.
function nr.list(ctx)
  local out = {}
  for id, raw in pairs(context.saved_nrs(ctx)) do
    local ns, wg = names.nr_ns(id), names.wg_if(id)
    local dev = core.netns.exists(ns) and core.wg.get { ns = ns, name = wg }
    out[#out + 1] = { net_id = id, network = raw.network, subnet = raw.subnet,
      namespace_up = core.netns.exists(ns) or false, wireguard_up = dev and true or false,
      peers = dev and #dev.peers or 0 }
  end
  table.sort(out, function(a, b) return a.net_id < b.net_id end)
  return out
end

-- The WireGuard state of one NR, as `wg show` would tell it.
function nr.status(ctx, net_id)
  if not names.valid_net_id(net_id) then check.fail("net_id", net_id, "must be 1..12 of a-z 0-9") end
  local ns = names.nr_ns(net_id)
  if not core.netns.exists(ns) then error("no NR " .. net_id .. " on this node", 0) end
  local dev, err = core.wg.get { ns = ns, name = names.wg_if(net_id) }
  local _ = ctx
  return { net_id = net_id, wireguard = dev or { error = err },
    links = core.link.dump(ns), addresses = core.addr.dump(ns), routes = core.route.dump(ns) }
end

-- Liveness: every saved NR whose WireGuard does not answer is applied
-- again from its saved config (a dead wireguard-go takes its interface
-- with it; the apply recreates both).
function nr.check(ctx)
  local restarted, healthy = {}, {}
  for id, raw in pairs(context.saved_nrs(ctx)) do
    local ns = names.nr_ns(id)
    local alive = core.netns.exists(ns) and core.wg.get { ns = ns, name = names.wg_if(id) }
    if alive then
      healthy[#healthy + 1] = id
    else
      nr.apply(ctx, raw)
      restarted[#restarted + 1] = id
    end
  end
  table.sort(restarted)
  table.sort(healthy)
  return { restarted = restarted, healthy = healthy }
end

return nr
