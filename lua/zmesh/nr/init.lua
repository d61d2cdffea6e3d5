-- Network resources on this node: apply an NR config, plan it, remove it,
-- list and inspect them. The Lua API behind the nr.* entry points.
local check = require "zmesh.check"
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local desired = require "zmesh.nr.desired"
local ip = require "zmesh.ip"
local json = require "zmesh.json"
local lock = require "zmesh.node.lock"
local names = require "zmesh.node.names"
local nr_config = require "zmesh.nr.config"
local paths = require "zmesh.nr.paths"
local reconcile = require "zmesh.reconcile"
local store = require "zmesh.node.store"
local uplink = require "zmesh.nr.uplink"

local nr = {}

-- Everything an NR needs from the node before its desired state can be
-- built; raises with a clear message when the node is not ready.
local function prepare(ctx, cfg)
  if not core.netns.exists(names.NDMZ) then
    error("the ndmz is not up on this node: run node.start first", 0)
  end
  -- A config whose node_id alone is wrong passes every other check and
  -- then routes as that node would (failover reads which node it is).
  if cfg.node_id and cfg.node_id ~= ctx.cfg.node_id then
    check.fail("node_id", cfg.node_id, "this NR config is for another node; this node is " .. ctx.cfg.node_id)
  end
  local ports = ctx.cfg.listen_ports
  if cfg.listen_port < ports.min or cfg.listen_port > ports.max then
    check.fail("wireguard_listen_port", cfg.listen_port,
      string.format("outside this node's range %d..%d", ports.min, ports.max))
  end
  for id, port in pairs(context.saved_listen_ports(ctx)) do
    if id ~= cfg.net_id and port == cfg.listen_port then
      check.conflict("wireguard_listen_port", cfg.listen_port, "already used by NR " .. id)
    end
  end
  -- An attached container keeps its address: an NR moved away from it
  -- would leave the container with no gateway, while saying "applied".
  local subnet = ip.parse_cidr(cfg.subnet)
  local subnet6 = cfg.ipv6_subnet and ip.parse_cidr(cfg.ipv6_subnet)
  local records = context.attachments(ctx, cfg.net_id)
  local attached = {}
  for netns in pairs(records) do attached[#attached + 1] = netns end
  table.sort(attached)
  for _, netns in ipairs(attached) do
    local rec = records[netns]
    -- A record whose namespace its runtime removed holds nothing.
    local a, a6 = ip.parse_addr(rec.ip or ""), rec.ip6 and ip.parse_addr(rec.ip6)
    if not core.netns.exists(netns) then a, a6 = nil, nil end
    if a and not ip.contains(subnet, a) then
      check.conflict("subnet", cfg.subnet, string.format("container %s is attached at %s, outside it: "
        .. "detach it first (and attach it again in the new subnet)", netns, rec.ip))
    end
    if a6 and not (subnet6 and ip.contains(subnet6, a6)) then
      check.conflict("ipv6_subnet", cfg.ipv6_subnet, string.format("container %s is attached at %s, outside it: "
        .. "detach it first (and attach it again in the new subnet)", netns, rec.ip6))
    end
  end
  local rules = context.firewall(ctx, "nr", desired.firewall_ctx(cfg))
  local uplink_addr = uplink.allocate(core, cfg.net_id)
  -- The key last: nothing after it can fail and leave it open.
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
  return {
    firewall = rules,
    uplink_addr = uplink_addr,
    uplink = uplink.node_link(core),
    private_key = key,
    public_key = public,
    backend = ctx.cfg.wireguard_backend,
    log = context.wg_log(ctx, cfg.net_id),
  }
end

-- The desired state of each of NR CFG's attached containers whose
-- namespace is there, as container.attach has it: {netns, want} in
-- namespace order. An NR whose MTU or prefixes change (a routed /64
-- added) takes its containers' links and addresses along in the same
-- apply; each is its own apply after the NR's, so that one container
-- its runtime broke fails alone, not the NR. Their addresses are in the
-- NR's subnets: prepare refuses a config that moves a subnet away.
local function attached_containers(ctx, cfg, node_uplink)
  local records = context.attachments(ctx, cfg.net_id)
  local list = {}
  for netns in pairs(records) do list[#list + 1] = netns end
  table.sort(list)
  local out = {}
  for _, netns in ipairs(list) do
    local rec = records[netns]
    if core.netns.exists(netns) then
      out[#out + 1] = { netns = netns, want = desired.container(cfg, { netns = netns, ip = rec.ip,
        ip6 = rec.ip6, port = rec.port, uplink = node_uplink }) }
    end
  end
  return out
end

-- CFG: RAW validated already, when the caller has it.
local function desired_of(ctx, raw, cfg)
  -- The peers' AllowedIPs as the daemon's last failover choice has them
  -- (nothing stored: as rendered), so that no apply undoes a failover.
  cfg = cfg or nr_config.validate(raw)
  cfg = paths.resolve(cfg, paths.from_stored(context.choice(ctx, cfg.net_id)))
  local prep = prepare(ctx, cfg)
  return cfg, desired.nr(cfg, prep), { own_routes = desired.nr_owned_routes(cfg) }, prep
end

-- The plan for RAW (an NR config table): one line per change, the NR's
-- and then its containers'.
function nr.plan(ctx, raw, valid)
  local cfg, want, opts, prep = desired_of(ctx, raw, valid)
  local lines = reconcile.plan(core, want, opts)
  prep.private_key:close()
  for _, c in ipairs(attached_containers(ctx, cfg, prep.uplink)) do
    for _, line in ipairs(reconcile.plan(core, c.want, {})) do lines[#lines + 1] = line end
  end
  return lines
end

local function check_net_id(net_id)
  if not names.valid_net_id(net_id) then check.fail("net_id", net_id, "must be 1..12 of a-z 0-9") end
end

-- What NET_ID's NR owns on this node, as desired state that says "gone":
-- its WireGuard (and the daemon, which lives in the ndmz), the ndmz end of
-- its uplink, its namespace with every veth in it (containers' links
-- included, so that they are gone when this returns), and its files.
function nr.removal(ctx, net_id)
  check_net_id(net_id)
  local ns = names.nr_ns(net_id)
  local want = {
    { kind = "link", type = "wireguard", ns = ns, name = names.wg_if(net_id),
      birth_ns = names.NDMZ, absent = true },
    { kind = "link", ns = names.NDMZ, name = names.ndmz_port(net_id), absent = true },
    { kind = "netns", name = ns, veths_first = true, absent = true },
    { kind = "file", path = context.wg_log(ctx, net_id), absent = true },
  }
  -- An entry point of a routed prefix: the ndmz's route into this NR.
  local stored = store.read(context.nr_file(ctx, net_id), "nr", {})
  local ok, cfg = pcall(nr_config.validate, stored)
  if stored and ok and cfg.routed_ipv6 then
    want[#want + 1] = { kind = "route", ns = names.NDMZ, family = 6, dst = cfg.routed_ipv6,
      via = names.nr_uplink6(net_id), absent = true }
  end
  for _, path in ipairs({ context.attachments_file(ctx, net_id), context.choice_file(ctx, net_id),
      context.nr_file(ctx, net_id) }) do
    want[#want + 1] = { kind = "file", path = path, absent = true }
    -- What a writer killed half-way left (core.fs.write's temporary).
    want[#want + 1] = { kind = "file", path = path .. ".tmp", absent = true }
    -- A file found bad and set aside: the NR it kept running is gone now.
    want[#want + 1] = { kind = "file", path = path .. ".corrupt", absent = true }
  end
  return want
end

-- The plan of removing NET_ID's NR: one line per change, changing nothing.
function nr.plan_remove(ctx, net_id)
  return reconcile.plan(core, nr.removal(ctx, net_id))
end

-- Remove NET_ID's NR, whatever is left of it (also what a killed apply or
-- removal left). Returns true when something was there. When it returns,
-- what it removed is gone: the same NR can be applied again at once.
function nr.remove(ctx, net_id)
  local want = nr.removal(ctx, net_id)
  return lock.hold(ctx, function()
    local report = reconcile.apply(core, want)
    if not report.ok then
      error(string.format("remove failed at '%s': %s", report.failed, tostring(report.error)), 0)
    end
    return #report.done > 0, report.done
  end)
end

-- Converge this node's NR to RAW. On failure, an NR that did not exist
-- before is removed again; an existing one is left for the next apply to
-- converge from. VALID: RAW as nr.config.validate gave it, when the
-- caller has checked it already (a config is checked once per apply).
function nr.apply(ctx, raw, valid)
  valid = valid or nr_config.validate(raw)
  return lock.hold(ctx, function()
    local cfg, want, opts, prep = desired_of(ctx, raw, valid)
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
    -- Then each attached container, on its own: {netns → {changes} or
    -- {error}} (its failure is said, the NR's apply stands).
    local containers = {}
    for _, c in ipairs(attached_containers(ctx, cfg, prep.uplink)) do
      local ok, r = pcall(reconcile.apply, core, c.want, {})
      if ok and r.ok then
        containers[c.netns] = { changes = json.array(r.done) }
      else
        containers[c.netns] = { error = ok and string.format("failed at '%s': %s", r.failed, tostring(r.error))
          or tostring(r) }
      end
    end
    return {
      net_id = cfg.net_id,
      namespace = names.nr_ns(cfg.net_id),
      interface = names.wg_if(cfg.net_id),
      public_key = prep.public_key,
      mesh_address = cfg.mesh_address,
      uplink_address = prep.uplink_addr,
      changes = report.done,
      containers = next(containers) and json.object(containers) or nil,
    }
  end)
end

-- The daemon's failover: store CHOICE (zmesh.nr.paths, as stored) for
-- NET_ID's NR and apply its stored config with it. Only AllowedIPs,
-- keepalives and the default route change; the tunnel stays up.
function nr.failover(ctx, net_id, choice)
  check_net_id(net_id)
  if type(choice) ~= "table" then check.fail("choice", choice, "must be an object") end
  return lock.hold(ctx, function()
    local raw = context.saved_nr(ctx, net_id)
    if not raw then check.not_found("net_id", net_id, "no such NR on this node") end
    context.save_choice(ctx, net_id, choice)
    return nr.apply(ctx, raw)
  end)
end

-- Every NR id this node has a trace of: saved configs, NR namespaces
-- (live or dead names), WireGuard sockets and ndmz links. An interrupted
-- first apply leaves traces without a saved config.
local function known_ids(ctx)
  local ids = {}
  for id in pairs(context.saved_nrs(ctx)) do ids[id] = true end
  for _, ns in ipairs(core.netns.list() or {}) do
    local id = ns:match("^n%-([a-z0-9]+)$")
    if id then ids[id] = true end
  end
  for _, file in ipairs(core.fs.list(names.WG_SOCKET_DIR) or {}) do
    local id = file:match("^w%-([a-z0-9]+)%.sock$")
    if id then ids[id] = true end
  end
  if core.netns.exists(names.NDMZ) then
    for _, l in ipairs(core.link.dump(names.NDMZ) or {}) do
      local id = l.name:match("^[nw]%-([a-z0-9]+)$")
      if id then ids[id] = true end
    end
  end
  local out = {}
  for id in pairs(ids) do if names.valid_net_id(id) then out[#out + 1] = id end end
  table.sort(out)
  return out
end
nr.known_ids = known_ids

-- Every NR on this node (saved, or a trace an interrupted apply left)
-- with whether its namespace and WireGuard are alive.
function nr.list(ctx)
  local out = {}
  local saved = context.saved_nrs(ctx)
  for _, id in ipairs(known_ids(ctx)) do
    local raw = saved[id]
    local ns, wg = names.nr_ns(id), names.wg_if(id)
    local up = core.netns.exists(ns) or false
    local dev = up and core.wg.get { ns = ns, name = wg }
    out[#out + 1] = { net_id = id, saved = raw ~= nil, network = raw and raw.network,
      subnet = raw and raw.subnet, namespace_up = up, wireguard_up = dev and true or false,
      peers = dev and #dev.peers or 0 }
  end
  return out
end

-- The WireGuard state of one NR, as `wg show` would tell it.
function nr.status(ctx, net_id)
  if not names.valid_net_id(net_id) then check.fail("net_id", net_id, "must be 1..12 of a-z 0-9") end
  local ns = names.nr_ns(net_id)
  if not core.netns.exists(ns) then check.not_found("net_id", net_id, "no such NR on this node") end
  local dev, err = core.wg.get { ns = ns, name = names.wg_if(net_id) }
  local _ = ctx
  return { net_id = net_id, wireguard = dev or { error = err },
    links = core.link.dump(ns), addresses = core.addr.dump(ns), routes = core.route.dump(ns) }
end

-- Liveness: every saved NR whose WireGuard does not answer is applied
-- again from its saved config (a dead wireguard-go takes its interface
-- with it; the apply recreates both). What an interrupted first apply
-- left (traces of an NR never saved) is removed: no one asked for it.
function nr.check(ctx)
  return lock.hold(ctx, function()
    local restarted, healthy, removed = {}, {}, {}
    local saved = context.saved_nrs(ctx)
    local aside = context.set_aside(ctx).nrs
    for _, id in ipairs(known_ids(ctx)) do
      local raw = saved[id]
      local ns = names.nr_ns(id)
      if not raw and aside[id] then
        -- Its stored config was found bad: left running, unmanaged.
        healthy[#healthy + 1] = id
      elseif not raw then
        nr.remove(ctx, id)
        removed[#removed + 1] = id
      elseif core.netns.exists(ns) and core.wg.get { ns = ns, name = names.wg_if(id) } then
        healthy[#healthy + 1] = id
      else
        nr.apply(ctx, raw)
        restarted[#restarted + 1] = id
      end
    end
    return { restarted = restarted, healthy = healthy, removed = removed }
  end)
end

return nr
