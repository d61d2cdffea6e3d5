-- Checks on node facts and on a whole network. Each check raises one
-- message that names the field and the value at fault, e.g.
--   nodes[n2].subnet: '10.2.1.0/24' is outside ip_range 10.1.0.0/16
-- so that bad input is refused before anything is written or rendered.
local check = require "zmesh.check"
local json_kind = require("zmesh.json").kind
local ip = require "zmesh.ip"
local keys = require "zmesh.net.keys"
local model = require "zmesh.net.model"

local validate = {}

-- Values as every message shows them (cut, escaped, keys never shown).
local function show(v)
  if v == nil then return "(missing)" end
  return check.show(v)
end

-- Raise "FIELD: VALUE MESSAGE".
local function fail(field, value, fmt, ...)
  error(string.format("%s: %s %s", field, show(value), string.format(fmt, ...)), 0)
end
validate.fail = fail

local reserved = ip.parse_cidr("100.64.0.0/10")
local private4 = {
  ip.parse_cidr("10.0.0.0/8"), ip.parse_cidr("172.16.0.0/12"), ip.parse_cidr("192.168.0.0/16"),
}

-- A prefix in FIELD, with host bits clear; returns it parsed (shared:
-- see ip.parsed).
local function prefix(field, value, family)
  if type(value) ~= "string" then fail(field, value, "must be a prefix such as 10.1.0.0/16") end
  local p = value:find("/", 1, true) and ip.parsed(value)
  if not p or not p.family or not ip.is_network(p) then
    -- The slow path, for its message.
    local _, err = ip.parse_cidr(value, { strict = true })
    fail(field, value, "is not a valid prefix (%s)", (err:gsub("^'.-' ", "")))
  end
  if p.family ~= family then fail(field, value, "must be an IPv%d prefix", family) end
  return p
end

function validate.ip_range(value, field)
  field = field or "ip_range"
  local p = prefix(field, value, 4)
  if ip.overlaps(p, reserved) then
    fail(field, value, "overlaps 100.64.0.0/10, which Zero-Mesh reserves for its own addresses")
  end
  local private = false
  for _, r in ipairs(private4) do private = private or ip.contains(r, p) end
  if not private then
    fail(field, value, "is not a private range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)")
  end
  if p.len > 24 then fail(field, value, "is smaller than one /24, the subnet of one NR") end
  return p
end

local v6_ok = { ula = true, global = true, documentation = true }

function validate.ipv6_range(value, field)
  field = field or "ipv6_range"
  local p = prefix(field, value, 6)
  if not v6_ok[ip.classify(p)] then
    fail(field, value, "must be a unique local (fd00::/8) or global unicast prefix")
  end
  if p.len > 64 then fail(field, value, "is smaller than one /64, the IPv6 subnet of one NR") end
  -- The node side refuses shorter ones (zmesh.nr.config): refuse them here first.
  if p.len < 8 then fail(field, value, "is wider than a /8") end
  return p
end

-- A routed prefix: global unicast (documentation space too: tests
-- simulate the Internet with it), where a provider routes it; each NR
-- gets a /64 of it.
function validate.routed_ipv6(value, field)
  field = field or "routed_ipv6"
  local p = prefix(field, value, 6)
  local class = ip.classify(p)
  if class ~= "global" and class ~= "documentation" then
    fail(field, value, "must be a global unicast prefix (one a provider routes to the exit node), not %s space",
      class)
  end
  if p.len > 64 then fail(field, value, "is smaller than one /64, the routed subnet of one NR") end
  if p.len < 16 then fail(field, value, "is wider than a /16") end
  return p
end

local function integer(field, value, lo, hi)
  if math.type(value) ~= "integer" or value < lo or value > hi then
    fail(field, value, "must be an integer from %d to %d", lo, hi)
  end
  return value
end

local function string_list(field, value)
  if type(value) ~= "table" or (next(value) ~= nil and value[1] == nil) or json_kind(value) == "object" then
    fail(field, value, "must be a list of strings")
  end
  for i, s in ipairs(value) do
    if type(s) ~= "string" then fail(string.format("%s[%d]", field, i), s, "must be a string") end
  end
  return value
end

-- Addresses no peer can dial and no uplink holds; 240.0.0.0/4 holds the
-- broadcast address.
local UNUSABLE = { unspecified = true, loopback = true, multicast = true }

local function unusable(field, s, a, what)
  -- The address itself, whatever its prefix length ("0.0.0.0/0").
  local class = ip.classify({ family = a.family, bytes = a.bytes })
  if UNUSABLE[class] or (class == "reserved" and a.family == 4) then
    fail(field, s, "is a%s %s address, not %s", class == "unspecified" and "n" or "", class, what)
  end
end

local facts_fields = { node_id = true, public_key = true, addresses = true,
  listen_ports = true, force_role = true, public_endpoints = true, mtu = true }

-- Node facts as the node publishes them. WHERE prefixes field names.
function validate.facts(f, where)
  where = where or "facts"
  if type(f) ~= "table" or json_kind(f) == "array" or f[1] ~= nil then
    fail(where, f, "must be an object of node facts")
  end
  for k in pairs(f) do
    if not facts_fields[k] then fail(where .. "." .. tostring(k), f[k], "is not a node fact") end
  end
  if not model.valid_node_id(f.node_id) then
    fail(where .. ".node_id", f.node_id, "must match [a-z0-9][a-z0-9_-]* (at most %d characters)",
      model.NODE_ID_MAX)
  end
  if not keys.valid_public(f.public_key) then
    fail(where .. ".public_key", f.public_key, "is not a base64 X25519 public key")
  end
  string_list(where .. ".addresses", f.addresses)
  if #f.addresses == 0 then fail(where .. ".addresses", f.addresses, "is empty: a node needs an uplink address") end
  local listed = {}
  for i, s in ipairs(f.addresses) do
    local a = s:find("/", 1, true) and ip.parsed(s)
    if not a then fail(string.format("%s.addresses[%d]", where, i), s, "is not an address/prefix such as 203.0.113.11/24") end
    unusable(string.format("%s.addresses[%d]", where, i), s, a, "an uplink address")
    local key = string.char(a.family, table.unpack(a.bytes))
    if listed[key] then fail(string.format("%s.addresses[%d]", where, i), s, "is also addresses[%d]", listed[key]) end
    listed[key] = i
  end
  local lp = f.listen_ports
  if type(lp) ~= "table" or json_kind(lp) == "array" or lp[1] ~= nil then
    fail(where .. ".listen_ports", lp, "must be {\"min\": port, \"max\": port}")
  end
  for k in pairs(lp) do
    if k ~= "min" and k ~= "max" then
      fail(where .. ".listen_ports." .. tostring(k), lp[k], "is not a field of listen_ports (min, max)")
    end
  end
  integer(where .. ".listen_ports.min", lp.min, 1, 65535)
  integer(where .. ".listen_ports.max", lp.max, 1, 65535)
  if lp.max < lp.min then fail(where .. ".listen_ports", lp, "has max below min") end
  if f.force_role ~= nil and f.force_role ~= "public" and f.force_role ~= "hidden" then
    fail(where .. ".force_role", f.force_role, "must be \"public\" or \"hidden\"")
  end
  if f.mtu ~= nil then integer(where .. ".mtu", f.mtu, model.MIN_MTU, 65535) end
  if f.public_endpoints ~= nil then
    string_list(where .. ".public_endpoints", f.public_endpoints)
    for i, s in ipairs(f.public_endpoints) do
      if s:find("/", 1, true) or not ip.parsed(s) then
        fail(string.format("%s.public_endpoints[%d]", where, i), s, "is not an IPv4 or IPv6 address")
      end
      unusable(string.format("%s.public_endpoints[%d]", where, i), s, ip.parsed(s), "an address peers dial")
    end
  end
  return f
end

-- Every field a network file may hold, and a node in it: a misspelt
-- field ("exits") must not be read as its absence.
local network_fields = { format = true, name = true, net_id = true, ip_range = true,
  ipv6_range = true, routed_ipv6 = true, exit = true, internet_targets = true, nodes = true,
  access = true, access_subnet = true, access_ipv6_subnet = true, expose = true, published = true }
local node_fields = { node_id = true, facts = true, subnet = true, ipv6_subnet = true,
  routed_ipv6_subnet = true, wireguard_listen_port = true, wireguard_public_key = true,
  wireguard_private_key = true, sealed_to = true, aggregators = true }

local function known(where, t, fields, what)
  for k in pairs(t) do
    if not fields[k] then
      fail(where == "" and tostring(k) or where .. "." .. tostring(k), t[k], "is not a field of %s", what)
    end
  end
end

-- How many /24s of RANGE (parsed) can be NR subnets.
function validate.capacity(range)
  local n = ip.subnet_count(range, 24)
  for _, s in ipairs({ "0.0", "255.255" }) do
    local sub = ip.parse_cidr(string.format("%d.%s.0/24", range.bytes[1], s))
    if ip.contains(range, sub) and not model.mesh_usable(sub) then n = n - 1 end
  end
  return n
end

-- Record prefix P as FIELD's in SEEN; a second claim is an overlap.
local function claim(seen, p, field, value)
  local key = ip.key(p)
  if seen[key] then fail(field, value, "overlaps %s", seen[key]) end
  seen[key] = field
  return p
end

-- A /24 (and /64) assigned in the network: well-formed, inside the
-- ranges, not taken. SEEN maps canonical text to the field holding it.
local function check_subnet(field, value, range, seen)
  local p = prefix(field, value, 4)
  if p.len ~= 24 then fail(field, value, "must be a /24") end
  if not ip.contains(range, p) then fail(field, value, "is outside ip_range %s", ip.format_cidr(range)) end
  if not model.mesh_usable(p) then
    fail(field, value, "cannot be used: its wg mesh address %s is not a host address", model.mesh_address(p))
  end
  return claim(seen, p, field, value)
end

-- A /24 given by the user for an NR, checked on its own.
function validate.subnet(field, value, range)
  return check_subnet(field, value, range, {})
end

-- A /64 inside RANGE (the network's field RANGE_NAME), or nothing when
-- the network has no such range.
local function check_64(field, value, range, range_name, seen)
  if range == nil then
    if value ~= nil then fail(field, value, "is set but the network has no %s", range_name) end
    return nil
  end
  if value == nil then fail(field, value, "is required: the network has %s %s", range_name, ip.format_cidr(range)) end
  local p = prefix(field, value, 6)
  if p.len ~= 64 then fail(field, value, "must be a /64") end
  if not ip.contains(range, p) then fail(field, value, "is outside %s %s", range_name, ip.format_cidr(range)) end
  return claim(seen, p, field, value)
end

local function check_subnet6(field, value, range6, seen)
  return check_64(field, value, range6, "ipv6_range", seen)
end

-- A /64 given by the user for an NR, checked on its own.
function validate.subnet6(field, value, range6)
  return check_subnet6(field, value, range6, {})
end

local function check_node(n, i, range, range6, routed, seen)
  local where = string.format("nodes[%d]", i)
  if type(n) ~= "table" then fail(where, n, "must be an object") end
  if not model.valid_node_id(n.node_id) then
    fail(where .. ".node_id", n.node_id, "must match [a-z0-9][a-z0-9_-]* (at most %d characters)", model.NODE_ID_MAX)
  end
  where = string.format("nodes[%s]", n.node_id)
  known(where, n, node_fields, "a node")
  if seen.nodes[n.node_id] then fail(where .. ".node_id", n.node_id, "is a duplicate node") end
  seen.nodes[n.node_id] = true
  local f = validate.facts(n.facts, where .. ".facts")
  if f.node_id ~= n.node_id then fail(where .. ".facts.node_id", f.node_id, "differs from the node's id") end
  if seen.node_keys[f.public_key] then
    fail(where .. ".facts.public_key", f.public_key, "is the key of node %s too: a duplicate node", seen.node_keys[f.public_key])
  end
  seen.node_keys[f.public_key] = n.node_id
  check_subnet(where .. ".subnet", n.subnet, range, seen.v4)
  check_subnet6(where .. ".ipv6_subnet", n.ipv6_subnet, range6, seen.v6)
  check_64(where .. ".routed_ipv6_subnet", n.routed_ipv6_subnet, routed, "routed_ipv6", seen.routed)
  local port = n.wireguard_listen_port
  integer(where .. ".wireguard_listen_port", port, 1, 65535)
  if port < f.listen_ports.min or port > f.listen_ports.max then
    fail(where .. ".wireguard_listen_port", port, "is outside the node's listen_ports %d-%d",
      f.listen_ports.min, f.listen_ports.max)
  end
  if not keys.valid_public(n.wireguard_public_key) then
    fail(where .. ".wireguard_public_key", n.wireguard_public_key, "is not a base64 WireGuard public key")
  end
  -- Two NRs with one key: WireGuard could not tell their peers apart.
  if seen.nr_keys[n.wireguard_public_key] then
    fail(where .. ".wireguard_public_key", n.wireguard_public_key, "is also nodes[%s]'s: every NR needs its own key",
      seen.nr_keys[n.wireguard_public_key])
  end
  seen.nr_keys[n.wireguard_public_key] = n.node_id
  if not keys.valid_sealed(n.wireguard_private_key) then
    -- Not sealed, so it may be a plain private key: no part of it is shown.
    local v = n.wireguard_private_key
    error(string.format("%s.wireguard_private_key: %s is not a private key sealed to the node (base64, %d characters)",
      where, type(v) == "string" and string.format("(a string of %d characters, not shown)", #v) or show(v),
      keys.SEALED_LEN), 0)
  end
  if n.sealed_to ~= f.public_key then
    fail(where .. ".sealed_to", n.sealed_to,
      "is not the node's public_key: re-key with `zmesh net add-node --update`")
  end
end

-- A node's record of its aggregators (the choice in force, see
-- zmesh.net.init remember): other nodes of the network, each once. Roles
-- are the policies' to say, so a record naming a node that is no longer
-- public is stale, not wrong; the topology skips such entries.
local function check_record(n, seen)
  local rec = n.aggregators
  if rec == nil then return end
  local where = string.format("nodes[%s].aggregators", n.node_id)
  string_list(where, rec)
  local listed = {}
  for i, p in ipairs(rec) do
    local field = string.format("%s[%d]", where, i)
    if not seen.nodes[p] then fail(field, p, "is not a node of the network") end
    if p == n.node_id then fail(field, p, "is the node itself") end
    if listed[p] then fail(field, p, "is listed twice") end
    listed[p] = true
  end
end

local function check_access(net, range, range6, seen)
  if net.access == nil then return end
  if type(net.access) ~= "table" or json_kind(net.access) == "object" then fail("access", net.access, "must be a list") end
  if #net.access == 0 then return end
  local sub = check_subnet("access_subnet", net.access_subnet, range, seen.v4)
  local sub6 = check_subnet6("access_ipv6_subnet", net.access_ipv6_subnet, range6, seen.v6)
  local names, addrs = {}, {}
  for i, a in ipairs(net.access) do
    local where = string.format("access[%d]", i)
    if type(a) ~= "table" then fail(where, a, "must be an object") end
    if not model.valid_name(a.name) then fail(where .. ".name", a.name, "must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most %d characters)", model.NAME_MAX) end
    where = string.format("access[%s]", a.name)
    if names[a.name] then fail(where .. ".name", a.name, "is a duplicate device") end
    names[a.name] = true
    local p = prefix(where .. ".address", a.address, 4)
    if p.len ~= 32 or not ip.contains(sub, p) then
      fail(where .. ".address", a.address, "must be a /32 in access_subnet %s", net.access_subnet)
    end
    if addrs[a.address] then fail(where .. ".address", a.address, "is used by device %s too", addrs[a.address]) end
    addrs[a.address] = a.name
    if sub6 then
      local p6 = prefix(where .. ".ipv6_address", a.ipv6_address, 6)
      if p6.len ~= 128 or not ip.contains(sub6, p6) then
        fail(where .. ".ipv6_address", a.ipv6_address, "must be a /128 in access_ipv6_subnet %s", net.access_ipv6_subnet)
      end
    end
    if not keys.valid_public(a.wireguard_public_key) then
      fail(where .. ".wireguard_public_key", a.wireguard_public_key, "is not a base64 WireGuard public key")
    end
    if not seen.nodes[a.via] then fail(where .. ".via", a.via, "is not a node of the network") end
  end
end

-- One exposure: { node, address, proto, port }. NODE and its routed
-- subnet come from the network (nodes by id).
function validate.exposure(e, where, nodes)
  if type(e) ~= "table" then fail(where, e, "must be an object {node, address, proto, port}") end
  for k in pairs(e) do
    if k ~= "node" and k ~= "address" and k ~= "proto" and k ~= "port" then
      fail(where .. "." .. tostring(k), e[k], "is not a field of an exposure (node, address, proto, port)")
    end
  end
  local node = nodes[e.node]
  if not node then fail(where .. ".node", e.node, "is not a node of the network") end
  if not node.routed_ipv6_subnet then
    fail(where .. ".node", e.node, "has no routed IPv6 subnet (the network has no routed_ipv6)")
  end
  local a = type(e.address) == "string" and not e.address:find("/", 1, true) and ip.parse_addr(e.address)
  local sub = ip.parsed(node.routed_ipv6_subnet)
  if not a or a.family ~= 6 then fail(where .. ".address", e.address, "is not an IPv6 address") end
  if not ip.contains(sub, a) then
    fail(where .. ".address", e.address, "is not in %s's routed subnet %s", e.node, node.routed_ipv6_subnet)
  end
  if ip.equal(a, ip.host(sub, 0)) or ip.equal(a, ip.host(sub, 1)) then
    fail(where .. ".address", e.address, "is the routed subnet's network or gateway address")
  end
  if ip.format_addr(a) ~= e.address then
    fail(where .. ".address", e.address, "is not in its shortest form (%s)", ip.format_addr(a))
  end
  if e.proto ~= "tcp" and e.proto ~= "udp" then fail(where .. ".proto", e.proto, "must be tcp or udp") end
  integer(where .. ".port", e.port, 1, 65535)
  return e
end

local function check_expose(net)
  if net.expose == nil then return end
  if type(net.expose) ~= "table" or json_kind(net.expose) == "object" then
    fail("expose", net.expose, "must be a list")
  end
  local nodes, keys = {}, {}
  for _, n in ipairs(net.nodes) do nodes[n.node_id] = n end
  for i, e in ipairs(net.expose) do
    local where = string.format("expose[%d]", i)
    validate.exposure(e, where, nodes)
    local key = string.format("%s %s/%d", e.address, e.proto, e.port)
    if keys[key] then fail(where, key, "is exposed twice") end
    keys[key] = true
  end
end

-- The network's own fields, without its nodes.
function validate.header(net)
  if type(net) ~= "table" then fail("network", net, "must be a JSON object") end
  known("", net, network_fields, "a network file")
  if net.format ~= model.FORMAT then fail("format", net.format, "is not %d, the format this zmesh reads", model.FORMAT) end
  if not model.valid_name(net.name) then
    fail("name", net.name, "must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most %d characters)", model.NAME_MAX)
  end
  if type(net.net_id) ~= "string" or #net.net_id > model.NET_ID_MAX or not net.net_id:match(model.NET_ID) then
    fail("net_id", net.net_id, "must be 1 to %d characters of [a-z0-9]", model.NET_ID_MAX)
  end
  local range = validate.ip_range(net.ip_range)
  local range6 = net.ipv6_range ~= nil and validate.ipv6_range(net.ipv6_range) or nil
  local routed = net.routed_ipv6 ~= nil and validate.routed_ipv6(net.routed_ipv6) or nil
  if routed and range6 and ip.overlaps(routed, range6) then
    fail("routed_ipv6", net.routed_ipv6, "overlaps ipv6_range %s", net.ipv6_range)
  end
  if net.exit ~= nil and type(net.exit) ~= "string" then
    if type(net.exit) ~= "table" or #net.exit == 0 or json_kind(net.exit) == "object" then
      fail("exit", net.exit, "must be a node id, or a list of them (the exit, then its fallbacks)")
    end
    local seen = {}
    for i, id in ipairs(net.exit) do
      if type(id) ~= "string" then fail(string.format("exit[%d]", i), id, "must be a node id") end
      if seen[id] then fail(string.format("exit[%d]", i), id, "is listed twice") end
      seen[id] = true
    end
  end
  if net.internet_targets ~= nil then
    if type(net.internet_targets) ~= "table" or json_kind(net.internet_targets) == "object"
        or #net.internet_targets == 0 or #net.internet_targets > 8 then
      fail("internet_targets", net.internet_targets, "must be a list of 1..8 IPv4 addresses")
    end
    local seen_target = {}
    for i, a in ipairs(net.internet_targets) do
      local field = string.format("internet_targets[%d]", i)
      local parsed = type(a) == "string" and ip.parse_addr(a)
      if not parsed or parsed.family ~= 4 then fail(field, a, "must be an IPv4 address") end
      -- Only an address out on the Internet tells that the exit reaches it.
      unusable(field, a, parsed, "an address on the Internet")
      if ip.contains(reserved, parsed) or (range and ip.contains(range, parsed)) then
        fail(field, a, "is inside the network's own addresses, not on the Internet")
      end
      if seen_target[a] then fail(field, a, "is also internet_targets[%d]", seen_target[a]) end
      seen_target[a] = i
    end
  end
  return range, range6, routed
end

-- NET's routed prefix must not hold a node's own address: the exit's ndmz
-- routes the prefix into the mesh, so a node dialled at an address inside
-- it could no longer be reached there. Checked where the prefix is set
-- or a node's facts change, not in every read of a file.
function validate.routed_apart(net)
  local routed = net.routed_ipv6 and ip.parsed(net.routed_ipv6)
  if not routed then return end
  for _, n in ipairs(net.nodes) do
    for _, list in ipairs({ n.facts.addresses, n.facts.public_endpoints or {} }) do
      for _, s in ipairs(list) do
        local a = ip.parsed(s)
        if a and a.family == 6 and ip.contains(routed, { family = 6, bytes = a.bytes, len = 128 }) then
          fail("routed_ipv6", net.routed_ipv6, "holds %s, an address of node %s: the exit would route it "
            .. "into the mesh", s, n.node_id)
        end
      end
    end
  end
end

-- The whole network; returns it, or raises the first problem found.
function validate.network(net)
  local range, range6, routed = validate.header(net)
  if type(net.nodes) ~= "table" or (next(net.nodes) ~= nil and net.nodes[1] == nil)
      or json_kind(net.nodes) == "object" then
    fail("nodes", net.nodes, "must be a list")
  end
  local wanted = #net.nodes + ((net.access and #net.access > 0) and 1 or 0)
  local capacity = validate.capacity(range)
  if wanted > capacity then
    fail("nodes", #net.nodes, "NRs%s do not fit: ip_range %s holds %d /24 subnets",
      wanted > #net.nodes and " and the access subnet" or "", net.ip_range, capacity)
  end
  if routed and #net.nodes > ip.subnet_count(routed, 64) then
    fail("nodes", #net.nodes, "NRs do not fit: routed_ipv6 %s holds %d /64 subnets", net.routed_ipv6,
      ip.subnet_count(routed, 64))
  end
  local seen = { nodes = {}, node_keys = {}, nr_keys = {}, v4 = {}, v6 = {}, routed = {} }
  for i, n in ipairs(net.nodes) do check_node(n, i, range, range6, routed, seen) end
  for _, n in ipairs(net.nodes) do check_record(n, seen) end
  for i, id in ipairs(model.exits(net)) do
    if not seen.nodes[id] then
      fail(type(net.exit) == "string" and "exit" or string.format("exit[%d]", i), id, "is not a node of the network")
    end
  end
  check_access(net, range, range6, seen)
  check_expose(net)
  return net
end

return validate
