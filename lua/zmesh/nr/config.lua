-- The NR config a node receives from provisioning (rendered by the network
-- tool, DESIGN §7), validated before anything is touched.
local check = require "zmesh.check"
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"

local config = {}

local CGNAT = ip.parse_cidr("100.64.0.0/10")
-- The NRs' IPv6 uplinks towards the ndmz (names.NR_UPLINK6_RANGE).
local NR6 = ip.parse_cidr(names.NR_UPLINK6_RANGE)

-- 100.64.<b>.<c>/16 for subnet a.<b>.<c>.0/24: the NR's wg mesh address.
function config.mesh_address(subnet)
  local p = ip.parse_cidr(subnet)
  return string.format("100.64.%d.%d/16", p.bytes[2], p.bytes[3])
end

-- Peer I of list C, normalised, and its AllowedIPs parsed.
local function check_peer(c, i, own_key)
  local where = check.path("peers", i)
  local parsed
  local p = c[i]
  if not check.is_object(p) then check.fail(where, p, "must be an object") end
  local at = check.at(p, where)
  check.known_fields(at, { "node_id", "subnet", "wireguard_public_key", "allowed_ips",
    "endpoint", "persistent_keepalive" })
  local out = {}
  if p.node_id ~= nil then
    -- A peer is a node, or an external device ("access:NAME") as the
    -- network tool names the devices an aggregator serves.
    local device = type(p.node_id) == "string" and p.node_id:match("^access:(.*)$")
    if device then
      if #device < 1 or #device > 64 or not device:match("^[A-Za-z0-9][A-Za-z0-9_.-]*$") then
        check.fail(check.name(at, "node_id"), p.node_id, "access:NAME needs NAME of 1..64 of A-Z a-z 0-9 _ . -")
      end
      out.node_id = p.node_id
    else
      out.node_id = check.node_id(p.node_id, check.name(at, "node_id"))
    end
  end
  out.public_key = check.wg_key(p.wireguard_public_key, check.name(at, "wireguard_public_key"))
  if out.public_key == own_key then
    check.fail(check.name(at, "wireguard_public_key"), out.public_key, "is this NR's own key")
  end
  if p.subnet ~= nil then out.subnet = check.prefix(p.subnet, check.name(at, "subnet")) end
  -- A backup aggregator is a standby peer: keepalives, no routes.
  local list = check.array(at, "allowed_ips", false, "prefixes")
  local list_at = check.name(at, "allowed_ips")
  out.allowed_ips, parsed = {}, {}
  for k, a in ipairs(list) do
    out.allowed_ips[k], parsed[k] = check.prefix(a, check.path(list_at, k))
  end
  if p.endpoint ~= nil then out.endpoint = check.endpoint(p.endpoint, check.name(at, "endpoint")) end
  out.persistent_keepalive = check.integer(at, "persistent_keepalive", 0, 65535, true)
  return out, parsed
end

-- What the NR's own prefixes are checked against: its /24, its mesh
-- address and its /64 are on this NR, so no peer may carry them or a
-- part of them. A peer may carry a prefix holding them only when that is
-- by design: the whole network (ip_range, the mesh range, ipv6_range:
-- the routes of a hidden NR's primary aggregator) or the sole exit's
-- 0.0.0.0/0 and ::/0. The NR's own routes are more specific, so its own
-- traffic never enters the tunnel.
local function own_prefixes(out)
  local own = { { p = ip.parse_cidr(out.subnet), what = "subnet " .. out.subnet } }
  local mesh = ip.parse_cidr(out.mesh_address)
  local mesh_host = ip.format_addr(mesh) .. "/32"
  own[2] = { p = ip.parse_cidr(mesh_host), what = "mesh address " .. mesh_host }
  local wide = { [ip.key(ip.parse_cidr(out.ip_range))] = true, [ip.key(ip.network(mesh))] = true }
  if out.ipv6_subnet then
    own[#own + 1] = { p = ip.parse_cidr(out.ipv6_subnet), what = "IPv6 subnet " .. out.ipv6_subnet }
  end
  if out.routed_ipv6_subnet then
    own[#own + 1] = { p = ip.parse_cidr(out.routed_ipv6_subnet),
      what = "routed IPv6 subnet " .. out.routed_ipv6_subnet }
  end
  if out.ipv6_range then wide[ip.key(ip.parse_cidr(out.ipv6_range))] = true end
  if out.routed_ipv6 then wide[ip.key(ip.parse_cidr(out.routed_ipv6))] = true end
  return own, wide
end

local function check_not_own(pa, text, field, own, wide)
  if pa.len == 0 or wide[ip.key(pa)] then return end
  for _, o in ipairs(own) do
    if ip.overlaps(pa, o.p) then
      check.fail(field, text, "overlaps this NR's own " .. o.what)
    end
  end
end

local v6_space = { ula = true, global = true, documentation = true }

-- The network's IPv6 prefix: unique local or global unicast, /8../64.
local function check_range6(c)
  local text, p = check.prefix(c.ipv6_range, "ipv6_range", 6)
  if not v6_space[ip.classify(p)] then
    check.fail("ipv6_range", text, "must be a unique local (fc00::/7) or global unicast prefix")
  end
  if p.len < 8 or p.len > 64 then check.fail("ipv6_range", text, "must be a /8 to /64") end
  return text, p
end

-- The NR's /64: unique local or global unicast, inside ipv6_range.
local function check_subnet6(c, range6, range6_text)
  local text, p = check.prefix(c.ipv6_subnet, "ipv6_subnet", 6)
  if p.len ~= 64 then check.fail("ipv6_subnet", text, "must be a /64") end
  local class = ip.classify(p)
  if not v6_space[class] then
    check.fail("ipv6_subnet", text, "is " .. class .. " space, not unique local (fc00::/7) or global unicast")
  end
  if range6 and not ip.contains(range6, p) then
    check.fail("ipv6_subnet", text, "is not inside ipv6_range " .. range6_text)
  end
  return text
end

-- The routed IPv6 prefix (global unicast, /16../64), the NR's /64 of it,
-- and what the user exposed to the Internet in it.
local function check_routed(c, out)
  local text, p = check.prefix(c.routed_ipv6, "routed_ipv6", 6)
  local class = ip.classify(p)
  if class ~= "global" and class ~= "documentation" then
    check.fail("routed_ipv6", text, "must be a global unicast prefix, not " .. class .. " space")
  end
  if p.len < 16 or p.len > 64 then check.fail("routed_ipv6", text, "must be a /16 to /64") end
  if out.ipv6_range and ip.overlaps(p, ip.parse_cidr(out.ipv6_range)) then
    check.fail("routed_ipv6", text, "overlaps ipv6_range " .. out.ipv6_range)
  end
  out.routed_ipv6 = text
  if c.routed_ipv6_subnet == nil then
    check.fail("routed_ipv6_subnet", nil, "missing (routed_ipv6 needs the NR's /64 of it)")
  end
  local sub_text, sub = check.prefix(c.routed_ipv6_subnet, "routed_ipv6_subnet", 6)
  if sub.len ~= 64 then check.fail("routed_ipv6_subnet", sub_text, "must be a /64") end
  if not ip.contains(p, sub) then
    check.fail("routed_ipv6_subnet", sub_text, "is not inside routed_ipv6 " .. text)
  end
  out.routed_ipv6_subnet = sub_text
  if c.expose ~= nil then
    out.expose = {}
    local seen = {}
    for i, e in ipairs(check.array(c, "expose", false, "exposures")) do
      local where = check.path("expose", i)
      if not check.is_object(e) then check.fail(where, e, "must be an object {address, proto, port}") end
      local at = check.at(e, where)
      check.known_fields(at, { "address", "proto", "port" })
      local a_text, a = check.address(e.address, check.name(at, "address"), 6)
      if not ip.contains(p, a) then
        check.fail(check.name(at, "address"), a_text, "is not inside routed_ipv6 " .. text)
      end
      local proto = check.oneof(at, "proto", { "tcp", "udp" })
      local port = check.integer(at, "port", 1, 65535)
      local key = string.format("%s %s/%d", a_text, proto, port)
      if seen[key] then check.fail(where, key, "is listed twice") end
      seen[key] = true
      out.expose[i] = { address = a_text, proto = proto, port = port }
    end
  end
end

-- A node id in the failover facts: a node, or a device ("access:NAME").
local function fo_id(v, field)
  if type(v) == "string" and v:match("^access:[A-Za-z0-9][A-Za-z0-9_.-]*$") and #v <= 71 then return v end
  return check.node_id(v, field)
end

local function fo_ids(t, field, path, optional)
  local list = check.array(check.at(t, path), field, optional, "node ids")
  if list == nil then return nil end
  local out, seen = {}, {}
  for i, id in ipairs(list) do
    local f = string.format("%s.%s[%d]", path, field, i)
    out[i] = fo_id(id, f)
    if seen[id] then check.fail(f, id, "is listed twice") end
    seen[id] = true
  end
  return out
end

local function fo_prefixes(t, field, path)
  local out = {}
  for i, a in ipairs(check.array(check.at(t, path), field, false, "prefixes")) do
    out[i] = check.prefix(a, string.format("%s.%s[%d]", path, field, i))
  end
  return out
end

-- The failover facts the network tool renders (zmesh.nr.paths uses
-- them): every id they name must be known, every prefix well formed,
-- no two nodes owning overlapping prefixes.
local function check_failover(c, me)
  local f = c.failover
  if not check.is_object(f) then check.fail("failover", f, "must be an object") end
  local at = check.at(f, "failover")
  check.known_fields(at, { "role", "keepalive", "exits", "internet_targets", "aggregators", "range",
    "hidden", "nodes" })
  local out = {}
  out.role = check.oneof(at, "role", { "public", "hidden" })
  out.keepalive = check.integer(at, "keepalive", 0, 65535, true)
  out.exits = fo_ids(f, "exits", "failover", true)
  if f.internet_targets ~= nil then
    out.internet_targets = {}
    for i, a in ipairs(check.array(at, "internet_targets", false, "addresses")) do
      out.internet_targets[i] = check.address(a, string.format("failover.internet_targets[%d]", i), 4)
    end
  end
  out.nodes = {}
  local prefixes, owner = {}, {}
  for id, n in pairs(check.object(at, "nodes")) do
    local path = "failover.nodes[" .. tostring(id) .. "]"
    fo_id(id, "failover.nodes")
    if type(n) ~= "table" then check.fail(path, n, "must be an object") end
    local nat = check.at(n, path)
    check.known_fields(nat, { "mesh", "owned", "aggregators", "device" })
    local node = { owned = fo_prefixes(n, "owned", path), aggregators = fo_ids(n, "aggregators", path, true),
      device = check.boolean(nat, "device", true) }
    if n.mesh ~= nil then
      local text, a = check.address(n.mesh, path .. ".mesh", 4)
      if not ip.contains(CGNAT, a) then check.fail(path .. ".mesh", text, "is not a mesh address (100.64.0.0/10)") end
      node.mesh = text
    elseif not node.device then
      check.fail(path .. ".mesh", nil, "missing (only a device has none)")
    end
    for k, p in ipairs(node.owned) do
      prefixes[#prefixes + 1] = ip.parse_cidr(p)
      owner[#owner + 1] = { id = id, text = p, k = k }
    end
    out.nodes[id] = node
  end
  local later, earlier = ip.first_overlap(prefixes)
  if later then
    local a, b = owner[later], owner[earlier]
    check.fail(string.format("failover.nodes[%s].owned[%d]", a.id, a.k), a.text,
      string.format("overlaps %s of node %s", b.text, b.id))
  end
  local function known(id, field)
    if id ~= me and not out.nodes[id] then check.fail(field, id, "is not in failover.nodes") end
  end
  for i, id in ipairs(out.exits or {}) do known(id, string.format("failover.exits[%d]", i)) end
  for id, n in pairs(out.nodes) do
    for i, a in ipairs(n.aggregators or {}) do
      known(a, string.format("failover.nodes[%s].aggregators[%d]", id, i))
    end
  end
  if out.role == "hidden" then
    out.aggregators = fo_ids(f, "aggregators", "failover")
    if #out.aggregators == 0 then check.fail("failover.aggregators", nil, "a hidden NR needs one") end
    for i, a in ipairs(out.aggregators) do known(a, string.format("failover.aggregators[%d]", i)) end
    out.range = fo_prefixes(f, "range", "failover")
  else
    out.hidden = fo_ids(f, "hidden", "failover", true) or {}
    for i, h in ipairs(out.hidden) do
      local f = string.format("failover.hidden[%d]", i)
      known(h, f)
      if h ~= me and not out.nodes[h].aggregators then check.fail(f, h, "has no aggregators in failover.nodes") end
    end
  end
  return out
end

-- Validate a decoded NR config; returns a normalised copy. The sealed
-- private key is kept as is (it opens only with the node's key).
function config.validate(c)
  if not check.is_object(c) then error("NR config must be a JSON object", 0) end
  check.known_fields(c, { "net_id", "network", "node_id", "ip_range", "subnet",
    "ipv6_range", "ipv6_subnet", "routed_ipv6", "routed_ipv6_subnet", "expose", "mtu",
    "wireguard_private_key", "wireguard_public_key",
    "wireguard_listen_port", "mesh_address", "exit", "exit_for_network", "peers", "failover",
    "generation" })
  local out = {}
  out.net_id = check.string(c, "net_id")
  if not names.valid_net_id(out.net_id) then
    check.fail("net_id", out.net_id, "must be 1..12 of a-z 0-9")
  end
  out.network = check.string(c, "network", true)
  -- The network's name as the network tool checked it: it reaches logs
  -- and status, so no control characters and no length without bound.
  if out.network and (#out.network > 64 or not out.network:match("^[A-Za-z0-9][A-Za-z0-9_.-]*$")) then
    check.fail("network", out.network, "must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 64 characters)")
  end
  -- The network's generation, as published (zmesh net publish): the node
  -- reports the one it applied.
  out.generation = check.integer(c, "generation", 0, 2 ^ 53, true)
  if c.node_id ~= nil then out.node_id = check.node_id(c.node_id, "node_id") end
  local range_text, range = check.prefix(check.string(c, "ip_range"), "ip_range", 4)
  if ip.overlaps(range, CGNAT) then
    check.fail("ip_range", range_text, "overlaps 100.64.0.0/10, which Zero-Mesh reserves")
  end
  if ip.classify(range) ~= "private" then
    check.fail("ip_range", range_text, "must be a private (RFC 1918) range")
  end
  out.ip_range = range_text
  local subnet_text, subnet = check.prefix(check.string(c, "subnet"), "subnet", 4)
  if subnet.len ~= 24 then check.fail("subnet", subnet_text, "must be a /24") end
  if not ip.contains(range, subnet) then
    check.fail("subnet", subnet_text, "is not inside ip_range " .. range_text)
  end
  out.subnet = subnet_text
  out.mesh_address = config.mesh_address(subnet_text)
  if c.mesh_address ~= nil and c.mesh_address ~= out.mesh_address then
    check.fail("mesh_address", c.mesh_address, "must be " .. out.mesh_address .. " for this subnet")
  end
  local range6
  if c.ipv6_range ~= nil then
    out.ipv6_range, range6 = check_range6(c)
    if ip.overlaps(range6, NR6) then
      check.fail("ipv6_range", out.ipv6_range, "overlaps " .. names.NR_UPLINK6_RANGE
        .. ", which Zero-Mesh reserves for the NRs' uplinks")
    end
  end
  if c.ipv6_subnet ~= nil then out.ipv6_subnet = check_subnet6(c, range6, out.ipv6_range) end
  if c.routed_ipv6 ~= nil then
    check_routed(c, out)
  elseif c.routed_ipv6_subnet ~= nil or c.expose ~= nil then
    check.fail(c.expose ~= nil and "expose" or "routed_ipv6_subnet",
      c.expose ~= nil and c.expose or c.routed_ipv6_subnet, "is set but routed_ipv6 is not")
  end
  -- The WireGuard MTU the network tool worked out for this NR's paths.
  out.mtu = check.integer(c, "mtu", 1280, 65535, true)
  -- Checked here so that C (libsodium's strict decoder) never sees it bad.
  out.sealed_private_key = check.string(c, "wireguard_private_key")
  local bad = check.base64_problem(out.sealed_private_key)
  if bad then
    check.fail("wireguard_private_key", nil, "must be a sealed key in base64 (" .. bad .. ")")
  end
  if c.wireguard_public_key ~= nil then
    out.public_key = check.wg_key(c.wireguard_public_key, "wireguard_public_key")
  end
  out.listen_port = check.integer(c, "wireguard_listen_port", 1, 65535)
  out.exit = check.oneof(c, "exit", { "local", "mesh" }, true) or "local"
  out.exit_for_network = check.boolean(c, "exit_for_network", true) or false
  local own, wide = own_prefixes(out)
  out.peers = {}
  local seen, prefixes, where, has_default = {}, {}, {}, false
  local peers = check.array(c, "peers")
  for i = 1, #peers do
    local peer, parsed = check_peer(peers, i, out.public_key)
    if seen[peer.public_key] then
      check.fail(string.format("peers[%d].wireguard_public_key", i), peer.public_key,
        "is also peers[" .. seen[peer.public_key] .. "]")
    end
    seen[peer.public_key] = i
    for k, a in ipairs(peer.allowed_ips) do
      local pa = parsed[k]
      local field = string.format("peers[%d].allowed_ips[%d]", i, k)
      check_not_own(pa, a, field, own, wide)
      -- The sole exit's 0.0.0.0/0 and ::/0 hold every other prefix by
      -- design; WireGuard takes the longest match.
      if pa.len > 0 then
        prefixes[#prefixes + 1] = pa
        where[#where + 1] = { text = a, field = field, peer = i }
      elseif pa.family == 4 then
        has_default = true
      end
    end
    out.peers[i] = peer
  end
  local later, earlier = ip.first_overlap(prefixes)
  if later then
    local a, b = where[later], where[earlier]
    check.fail(a.field, a.text, string.format("overlaps %s of peers[%d]", b.text, b.peer))
  end
  if out.exit == "mesh" and not has_default then
    check.fail("exit", "mesh", "no peer carries 0.0.0.0/0 (the sole exit's peer must)")
  end
  if c.failover ~= nil then
    if out.node_id == nil then check.fail("node_id", nil, "missing (the failover facts need it)") end
    out.failover = check_failover(c, out.node_id)
  end
  return out
end

return config
