-- The network tool as a Lua API (what `zmesh net`, the net.* entry points
-- and the REPL use). A network is a plain table (see zmesh.net.model);
-- functions that change one work on a copy and return it, so a failure
-- leaves the caller's network as it was:
--
--   local net = require "zmesh.net"
--   local n = net.new{ name = "demo", ip_range = "10.1.0.0/16" }
--   n = net.add_node(n, facts)           -- facts as `zmesh node facts` prints
--   print(json.encode(net.render(n, "n1")))
--   net.save(n, "demo.json")
--
-- OPTS everywhere: { policy_dir = dir or { dirs } } searched before
-- $ZMESH_POLICY_PATH and the default policies; or { policies = set } from
-- net.policies(), to load them once.
local access = require "zmesh.net.access"
local file = require "zmesh.net.file"
local graph = require "zmesh.net.graph"
local ip = require "zmesh.ip"
local json = require "zmesh.json"
local keys = require "zmesh.net.keys"
local model = require "zmesh.net.model"
local policies = require "zmesh.net.policies"
local render = require "zmesh.net.render"
local topology = require "zmesh.net.topology"
local validate = require "zmesh.net.validate"

local net = {}

net.load = file.load
net.save = file.save
net.encode = file.encode

function net.policies(opts)
  return policies.load(opts and opts.policy_dir)
end

local function policy_set(opts)
  return (opts and opts.policies) or net.policies(opts)
end

-- The topology of N (validated first), for render, graph and the REPL.
function net.topology(n, opts)
  validate.network(n)
  return topology.build(n, policy_set(opts))
end

-- A new, empty network. P: { name, ip_range, ipv6_range?, routed_ipv6?,
-- net_id? }.
function net.new(p)
  if type(p) ~= "table" then error("network: parameters must be a table", 0) end
  local n = {
    format = model.FORMAT, name = p.name, ip_range = p.ip_range, ipv6_range = p.ipv6_range,
    routed_ipv6 = p.routed_ipv6, net_id = p.net_id or model.random_id(), nodes = {},
  }
  return validate.network(n)
end

-- Every /24 and /64 in use (ULA and routed), as canonical text → true.
local function used_subnets(n, skip)
  local used, used6, used_routed = {}, {}, {}
  local function mark(s, s6, sr)
    if s then used[ip.format_cidr(ip.parse_cidr(s))] = true end
    if s6 then used6[ip.format_cidr(ip.parse_cidr(s6))] = true end
    if sr then used_routed[ip.format_cidr(ip.parse_cidr(sr))] = true end
  end
  for _, node in ipairs(n.nodes) do
    if node.node_id ~= skip then mark(node.subnet, node.ipv6_subnet, node.routed_ipv6_subnet) end
  end
  if n.access and #n.access > 0 then mark(n.access_subnet, n.access_ipv6_subnet) end
  return used, used6, used_routed
end

-- Ask the subnet policy for ID's subnets; FIXED is the user's /24, if
-- any. OPTS.routed_only: the node keeps its other subnets (its /24 is
-- FIXED), only a routed /64 is wanted.
local function pick_subnets(n, set, id, fixed, opts)
  local range, range6, routed = model.ranges(n)
  if opts and opts.routed_only then range6 = nil end
  local used, used6, used_routed = used_subnets(n, id)
  return policies.subnet(set, {
    node_id = id, ip_range = n.ip_range, ipv6_range = range6 and n.ipv6_range or nil, subnet = fixed,
    routed_ipv6 = n.routed_ipv6, used = used, used_ipv6 = used6, used_routed = used_routed,
    usable = function(cidr)
      local p = ip.parse_cidr(cidr)
      return p ~= nil and p.family == 4 and p.len == 24 and model.mesh_usable(p)
    end,
  }, range, range6, routed)
end

local function port_hash(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 0x7fffffff end
  return h
end

-- The listen port for NODE: spread over the node's range by network id
-- (so that networks sharing a node rarely collide), avoiding the ports of
-- NRs that share an address with it (port-forwarded nodes behind one IP).
local function pick_port(n, node)
  local f = node.facts
  local mine = {}
  for _, s in ipairs(f.addresses) do mine[s:match("^[^/]+")] = true end
  for _, s in ipairs(f.public_endpoints or {}) do mine[s] = true end
  local taken = {}
  for _, other in ipairs(n.nodes) do
    if other.node_id ~= node.node_id then
      local shares = false
      for _, s in ipairs(other.facts.addresses) do shares = shares or mine[s:match("^[^/]+")] end
      for _, s in ipairs(other.facts.public_endpoints or {}) do shares = shares or mine[s] end
      if shares then taken[other.wireguard_listen_port] = true end
    end
  end
  local lo, hi = f.listen_ports.min, f.listen_ports.max
  local size = hi - lo + 1
  local start = port_hash(n.net_id) % size
  for k = 0, size - 1 do
    local port = lo + (start + k) % size
    if not taken[port] then return port end
  end
  validate.fail(string.format("nodes[%s].facts.listen_ports", node.node_id), f.listen_ports,
    "has no port left that no other NR on the same address uses")
end

-- The user's fixed subnets must be free: name the user's field, not the
-- other node's.
local function check_fixed(n, id, opts)
  local range, range6 = model.ranges(n)
  for _, f in ipairs({ { "subnet", range }, { "ipv6_subnet", range6 } }) do
    local value = opts[f[1]]
    if value ~= nil and f[2] then
      local p = f[1] == "subnet" and validate.subnet(f[1], value, range) or validate.subnet6(f[1], value, range6)
      local key = ip.format_cidr(p)
      for _, other in ipairs(n.nodes) do
        local theirs = other[f[1]] and ip.format_cidr(ip.parse_cidr(other[f[1]]))
        if other.node_id ~= id and theirs == key then
          validate.fail(f[1], value, "is in use by %s", other.node_id)
        end
      end
    end
  end
end

-- Record in each hidden node's entry the aggregators N gives it now. This
-- is the network's memory: the aggregator policy gets it back as
-- req.current and keeps it, so that nodes coming and going never move a
-- primary (which costs the hidden NRs behind it lost packets on the
-- re-apply). Every change records before (a file without the record gets
-- the choice it renders to) and after. Where the policy could not be
-- asked (a network problem, e.g. a hidden node that reaches no public
-- node), each hidden node keeps its old record, cut down to public nodes
-- it can still reach. Raises on a policy's fault, not on a network problem.
local function remember(n, set)
  local t = topology.build(n, set, { lenient = true })
  local kept = topology.current(t, t.hidden)
  for _, node in ipairs(n.nodes) do
    local id = node.node_id
    local list = t.role[id] == "hidden" and (t.aggregators[id] or kept[id]) or nil
    node.aggregators = list and table.move(list, 1, #list, 1, {}) or nil
  end
  return t
end

-- A change that leaves the network unrenderable, when it rendered
-- before, is refused with the reason (BEFORE, AFTER: the lenient
-- topologies around the change): clearing the exit a routed prefix
-- enters by, an update that leaves a hidden node nothing to reach. A
-- network that did not render yet (one being built, a prefix waiting for
-- its exit) may go on changing; a removed node is gone whatever the file
-- says, so remove-node is not refused but says what no longer renders.
local function keep_renderable(before, after)
  if after.problem and not before.problem then error(after.problem, 0) end
end

-- An exit that cannot be the routed prefix's entry point is refused when
-- set (set-exit, set-routed-ipv6): the file stays renderable. A prefix
-- with no exit yet is not refused: the next set-exit completes it. T:
-- the lenient topology of the changed network.
local function refuse_bad_entry(t)
  local why = t.net.routed_ipv6 and topology.entry_problem(t)
  if why then error(why, 0) end
end

-- What changed between a node's old facts and its new ones, one line
-- each ("addresses: 203.0.113.11/24 → 198.51.100.57/24"), for add-node
-- --update to tell (a DHCP lease moved the node, its key changed, …).
local function facts_changes(old, new)
  local out = {}
  local function text(v)
    if v == nil then return "none" end
    if type(v) == "table" then
      if v.min then return string.format("%s-%s", tostring(v.min), tostring(v.max)) end
      return #v == 0 and "none" or table.concat(v, ", ")
    end
    return tostring(v)
  end
  for _, k in ipairs({ "addresses", "public_endpoints", "mtu", "listen_ports", "force_role", "public_key" }) do
    local a, b = text(old and old[k]), text(new[k])
    if a ~= b then
      out[#out + 1] = k == "public_key" and "public_key: the node's key changed (a new NR key pair)"
        or string.format("%s: %s → %s", k, a, b)
    end
  end
  return out
end

-- A copy of FACTS without JSON array marks (the file marks its own).
local function clean_facts(facts)
  if type(facts) ~= "table" then return facts end
  local f = model.copy(facts)
  for _, k in ipairs({ "addresses", "public_endpoints" }) do
    -- An object stays one: validation refuses it, not reads it as [].
    if type(f[k]) == "table" and json.kind(f[k]) ~= "object" then f[k] = table.move(f[k], 1, #f[k], 1, {}) end
  end
  return f
end

-- Add a node from its FACTS. OPTS: subnet, ipv6_subnet, port (fixed by
-- the user), update (refresh the facts of a node already in the network:
-- it keeps its subnet and port, and gets a new key pair if its node key
-- changed). Returns the new network and the node's entry.
function net.add_node(n, facts, opts)
  opts = opts or {}
  validate.network(n)
  local f = validate.facts(model.normalise_facts(clean_facts(facts)))
  local out = model.copy(n)
  local old, index = model.find_node(out, f.node_id)
  if old and not opts.update then
    validate.fail("facts.node_id", f.node_id,
      "is already a node of network %s (add-node --update refreshes its facts)", n.name)
  end
  if not old and opts.update then
    validate.fail("facts.node_id", f.node_id, "is not a node of network %s; nothing to update", n.name)
  end
  check_fixed(out, f.node_id, opts)
  local set = policy_set(opts)
  -- The choice in force, before the node (or its new facts) counts.
  local before = remember(out, set)
  local changes = old and facts_changes(old.facts, f) or nil
  local node = old or { node_id = f.node_id }
  node.facts = f
  local subnet = opts.subnet or (old and old.subnet)
  local subnet6 = opts.ipv6_subnet or (old and old.ipv6_subnet)
  local routed6 = old and old.routed_ipv6_subnet
  if not subnet or (n.ipv6_range and not subnet6) or (n.routed_ipv6 and not routed6) then
    local picked = pick_subnets(out, set, f.node_id, subnet)
    subnet, subnet6 = subnet or picked.subnet, subnet6 or picked.ipv6_subnet
    routed6 = routed6 or picked.routed_ipv6_subnet
  end
  node.subnet, node.ipv6_subnet = subnet, n.ipv6_range and subnet6 or nil
  node.routed_ipv6_subnet = n.routed_ipv6 and routed6 or nil
  if opts.port then
    node.wireguard_listen_port = math.tointeger(opts.port) or opts.port
  elseif not old or node.wireguard_listen_port < f.listen_ports.min
      or node.wireguard_listen_port > f.listen_ports.max then
    node.wireguard_listen_port = pick_port(out, node)
  end
  -- A new node key means the old sealed key cannot be opened: re-key.
  if node.sealed_to ~= f.public_key then
    node.wireguard_public_key, node.wireguard_private_key = keys.for_node(f.public_key)
    node.sealed_to = f.public_key
  end
  if not old then out.nodes[#out.nodes + 1] = node else out.nodes[index] = node end
  model.sort(out)
  validate.network(out)
  validate.routed_apart(out)
  local after = remember(out, set)
  -- A new node may join a network still being built (no public node yet).
  if old or #before.public > 0 then
    keep_renderable(before, after)
    -- Public NRs form a full mesh: the node must reach every other public
    -- one and be reached (unless that was broken already).
    local why = not before.problem and topology.public_unreachable(after, f.node_id)
    if why and not (old and topology.public_unreachable(before, f.node_id)) then error(why, 0) end
  end
  return out, node, changes
end

-- Without devices, the network holds no access subnet either.
local function drop_empty_access(n)
  if n.access and #n.access == 0 then
    n.access, n.access_subnet, n.access_ipv6_subnet = nil, nil, nil
  end
end

-- Remove node ID. Returns the new network and notes (what else changed:
-- a removed exit, devices that peered with the node). Hidden NRs it
-- served move to their next aggregator (see remember).
function net.remove_node(n, id, opts)
  validate.network(n)
  local out = model.copy(n)
  local _, index = model.find_node(out, id)
  if not index then validate.fail("node", id, "is not a node of network %s", n.name) end
  local set = policy_set(opts)
  local before = remember(out, set)
  table.remove(out.nodes, index)
  local notes = {}
  local exits = model.exits(out)
  for i = #exits, 1, -1 do
    if exits[i] == id then
      table.remove(exits, i)
      if #exits == 0 then
        notes[#notes + 1] = string.format("%s was the sole exit: every NR now breaks out locally", id)
      elseif i == 1 then
        notes[#notes + 1] = string.format("%s was the sole exit: %s is now", id, exits[1])
      else
        notes[#notes + 1] = string.format("%s was an exit candidate: the candidates are now %s", id,
          table.concat(exits, ", "))
      end
    end
  end
  out.exit = model.exit_field(exits)
  for i = #(out.access or {}), 1, -1 do
    local a = out.access[i]
    if a.via == id then
      table.remove(out.access, i)
      notes[#notes + 1] = string.format("device %s peered with %s and was removed: add it again with add-access", a.name, id)
    end
  end
  drop_empty_access(out)
  if out.expose then
    for i = #out.expose, 1, -1 do
      if out.expose[i].node == id then
        notes[#notes + 1] = string.format("%s %s/%d was exposed on %s and is closed", out.expose[i].address,
          out.expose[i].proto, out.expose[i].port, id)
        table.remove(out.expose, i)
      end
    end
    if #out.expose == 0 then out.expose = nil end
  end
  -- Before validating: the record must no longer name the removed node.
  local after = remember(out, set)
  validate.network(out)
  -- Not refused: the node is gone, and the file must say so; but said.
  if after.problem and not before.problem then
    notes[#notes + 1] = "the network no longer renders until this is mended: " .. after.problem
  end
  return out, notes
end

-- What an exit candidate of N lacks, as notes: no global IPv6 address
-- (while it is the exit, no container reaches the IPv6 Internet), no
-- IPv4 address (it cannot ping the IPv4 probe targets, so it is taken
-- only when no candidate reaches the Internet).
local function exit_notes(n, ids)
  local function families(node)
    local v4, v6 = false, false
    for _, s in ipairs(node and node.facts.addresses or {}) do
      local a = ip.parsed(s)
      local class = a and ip.classify({ family = a.family, bytes = a.bytes })
      if a and a.family == 4 then v4 = true end
      if a and a.family == 6 and (class == "global" or class == "documentation") then v6 = true end
    end
    return v4, v6
  end
  -- Only where some node breaks out to the IPv6 Internet on its own.
  local any6 = false
  for _, node in ipairs(n.nodes) do any6 = any6 or select(2, families(node)) end
  local notes = {}
  for _, id in ipairs(ids) do
    local v4, v6 = families((model.find_node(n, id)))
    if any6 and not v6 then
      notes[#notes + 1] = string.format("%s has no global IPv6 address: while it is the exit, no container "
        .. "reaches the IPv6 Internet", id)
    end
    if not v4 then
      notes[#notes + 1] = string.format("%s has no IPv4 address: it cannot ping the IPv4 probe targets, so it is "
        .. "the exit only when no candidate reaches the Internet", id)
    end
  end
  return notes
end

-- Make node ID the sole exit of the network, or IDS (a list) the exit and
-- its fallbacks in order; nil (or "none") for local breakout everywhere.
-- The policies run on the result, so that a faulty one refuses the change.
function net.set_exit(n, ids, opts)
  validate.network(n)
  if ids == "none" then ids = nil end
  if type(ids) == "string" then ids = { ids } end
  for i, id in ipairs(ids or {}) do
    if not model.find_node(n, id) then
      validate.fail(#ids == 1 and "exit" or string.format("exit[%d]", i), id,
        "is not a node of network %s", n.name)
    end
  end
  local out = model.copy(n)
  out.exit = model.exit_field(ids or {})
  -- What the exit candidates ping to tell they reach the Internet (kept
  -- while there is an exit; no exit, nothing to probe for).
  if not ids then
    if opts and opts.internet_targets then
      validate.fail("internet_targets", opts.internet_targets, "are for an exit: set-exit none has none to probe")
    end
    out.internet_targets = nil
  elseif opts and opts.internet_targets then
    out.internet_targets = json.array(table.move(opts.internet_targets, 1, #opts.internet_targets, 1, {}))
  end
  validate.network(out)
  local set = policy_set(opts)
  local after = remember(out, set)
  refuse_bad_entry(after)
  keep_renderable(topology.build(n, set, { lenient = true }), after)
  return out, exit_notes(out, ids or {})
end

-- Give the network the routed IPv6 prefix PREFIX (a global prefix its
-- provider routes to the exit node), or none (nil or "none"). Every node
-- gets a /64 of it (the subnet policy's pick, at the index of its /24
-- where free); a prefix replaced renumbers every node, and exposures of
-- the old one are closed. Returns the new network and notes.
function net.set_routed_ipv6(n, prefix, opts)
  validate.network(n)
  if prefix == "none" then prefix = nil end
  local out = model.copy(n)
  local notes = {}
  if prefix ~= nil then
    local p = validate.routed_ipv6(prefix)
    prefix = ip.format_cidr(p)
  end
  if prefix == n.routed_ipv6 then return out, notes end
  if out.expose and #out.expose > 0 then
    notes[#notes + 1] = string.format("%d exposure(s) of %s closed: expose them again in the new prefix",
      #out.expose, n.routed_ipv6)
  end
  out.expose = nil
  out.routed_ipv6 = prefix
  for _, node in ipairs(out.nodes) do node.routed_ipv6_subnet = nil end
  if prefix then
    validate.header(out)
    local set = policy_set(opts)
    for _, node in ipairs(out.nodes) do
      node.routed_ipv6_subnet = pick_subnets(out, set, node.node_id, node.subnet,
        { routed_only = true }).routed_ipv6_subnet
    end
  end
  validate.network(out)
  validate.routed_apart(out)
  refuse_bad_entry(remember(out, policy_set(opts)))
  return out, notes
end

-- PORT ("8080/tcp", or a number and PROTO) as port, proto; raises naming FIELD.
local function port_proto(port, proto, field)
  local proto_field = "proto"
  if type(port) == "string" and proto == nil then
    local num, pr = port:match("^(%d+)/(%a+)$")
    if not num then validate.fail(field, port, "must be PORT/PROTO, e.g. 8080/tcp") end
    port, proto, proto_field = math.tointeger(tonumber(num)), pr:lower(), field
  end
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    validate.fail(field, port, "must be a port 1..65535")
  end
  if proto ~= "tcp" and proto ~= "udp" then validate.fail(proto_field, proto, "must be tcp or udp") end
  return port, proto
end

-- The exposure E = { node, address, port = "8080/tcp" | number, proto? },
-- checked and in canonical form.
local function exposure(n, e)
  if type(e) ~= "table" then validate.fail("expose", e, "must be {node, address, port}") end
  local port, proto = port_proto(e.port, e.proto, "port")
  local address = e.address
  local a = type(address) == "string" and not address:find("/", 1, true) and ip.parse_addr(address)
  if a then address = ip.format_addr(a) end
  local nodes = {}
  for _, node in ipairs(n.nodes) do nodes[node.node_id] = node end
  local out = { node = e.node, address = address, proto = proto, port = port }
  validate.exposure(out, "expose", nodes)
  return out
end

local function same_exposure(a, b)
  return a.address == b.address and a.proto == b.proto and a.port == b.port
end

-- Open PORT/PROTO of ADDRESS (a container's address in NODE's routed
-- /64) to the Internet: rendered into the configs, enforced at the
-- entry NR and at NODE's. E = { node, address, port, proto? }.
function net.expose(n, e, opts)
  validate.network(n)
  local x = exposure(n, e)
  for _, o in ipairs(n.expose or {}) do
    if same_exposure(o, x) then
      validate.fail("address", x.address, "has %s/%d exposed already", x.proto, x.port)
    end
  end
  local out = model.copy(n)
  out.expose = out.expose or json.array()
  out.expose[#out.expose + 1] = x
  model.sort(out)
  validate.network(out)
  remember(out, policy_set(opts))
  return out, x
end

-- Close what net.expose opened.
function net.unexpose(n, e, opts)
  validate.network(n)
  local x = exposure(n, e)
  local out = model.copy(n)
  for i, o in ipairs(out.expose or {}) do
    if same_exposure(o, x) and o.node == x.node then
      table.remove(out.expose, i)
      if #out.expose == 0 then out.expose = nil end
      validate.network(out)
      remember(out, policy_set(opts))
      return out, x
    end
  end
  validate.fail("address", x.address, "has no %s/%d exposed on %s", x.proto, x.port, tostring(x.node))
end

-- Add external device NAME. OPTS.via: the public node it peers with (else
-- the aggregator policy picks). Returns the new network, the wg-quick
-- config for the device (holding its private key: print it, never store
-- it), and the device's entry.
function net.add_access(n, name, opts)
  opts = opts or {}
  local set = policy_set(opts)
  local t = net.topology(n, { policies = set })
  if not model.valid_name(name) then validate.fail("name", name, "must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most %d characters)", model.NAME_MAX) end
  if model.find_access(n, name) then validate.fail("name", name, "is already a device of network %s", n.name) end
  local id = "access:" .. name
  t.device_facts[id] = { node_id = id, addresses = {} }
  local via = opts.via
  if via then
    if t.role[via] ~= "public" then
      validate.fail("via", via, "is not a public node of network %s", n.name)
    end
  else
    if #t.public == 0 then
      validate.fail("via", nil, "needs a public node, and network %s has none", n.name)
    end
    -- The hidden NRs' aggregators as context: the device joins their primary.
    local context = {}
    for _, h in ipairs(t.hidden) do context[h] = table.move(t.aggregators[h], 1, #t.aggregators[h], 1, {}) end
    via = policies.aggregators(set, function()
      -- Left unserved: the network's fault only when no public node can
      -- be dialled; else the policy broke its contract (said next).
      for _, p in ipairs(t.public) do
        if topology.dial(t, id, p) then return end
      end
      validate.fail("via", nil, "is needed: no public node of network %s can be dialled by a device", n.name)
    end, {
      net_id = n.net_id, hidden = { id }, public = table.move(t.public, 1, #t.public, 1, {}),
      reachable = function(_, p) return t.role[p] == "public" and topology.dial(t, id, p) ~= nil end,
      current = context,
    })[id][1]
  end
  local endpoint = topology.endpoint(t, id, via)
  if not endpoint then validate.fail("via", via, "has no address a device can dial") end
  local out = model.copy(n)
  if not out.access or #out.access == 0 then
    local picked = pick_subnets(out, set, "access")
    out.access_subnet, out.access_ipv6_subnet = picked.subnet, picked.ipv6_subnet
    out.access = {}
  end
  local i = access.free_index(out)
  if not i then validate.fail("access_subnet", out.access_subnet, "has no free address left") end
  local device = { name = name, via = via }
  device.address, device.ipv6_address = access.addresses(out, i)
  local private
  device.wireguard_public_key, private = keys.for_device()
  out.access[#out.access + 1] = device
  model.sort(out)
  validate.network(out)
  remember(out, set)
  return out, access.wg_quick(out, device, private, t.node[via], endpoint), device
end

function net.remove_access(n, name, opts)
  validate.network(n)
  local out = model.copy(n)
  local _, i = model.find_access(out, name)
  if not i then validate.fail("name", name, "is not a device of network %s", n.name) end
  table.remove(out.access, i)
  drop_empty_access(out)
  validate.network(out)
  remember(out, policy_set(opts))
  return out
end

-- The NR config of node ID.
function net.render(n, id, opts)
  return render.node(net.topology(n, opts), id)
end

-- Every NR config, { [node_id] = config }.
function net.render_all(n, opts)
  return render.all(net.topology(n, opts))
end

-- Node ID's config as compact JSON text (sorted keys), as provisioning
-- would send it.
function net.render_json(n, id, opts)
  return render.encoder()(net.render(n, id, opts))
end

-- Every config as one JSON object keyed by node id, compact: built in
-- pieces and joined once (it holds N² peers).
function net.render_all_json(n, opts)
  local t = net.topology(n, opts)
  local _, into = render.encoder()
  local out = {}
  for i, node in ipairs(n.nodes) do
    out[#out + 1] = (i == 1 and "{" or ",") .. json.encode(node.node_id) .. ":"
    into(out, render.node(t, node.node_id))
  end
  out[#out + 1] = #n.nodes == 0 and "{}" or "}"
  return table.concat(out)
end

function net.graph(n, opts)
  return graph.dot(net.topology(n, opts))
end

-- Full check: the file, the policies' answers, and every NR's render.
-- Returns a summary of the network.
function net.validate(n, opts)
  local t = net.topology(n, opts)
  render.all(t)
  return net.summary(t)
end

-- What the topology decided, per node, for show and validate.
function net.summary(t)
  local n = t.net
  local nodes = {}
  for _, node in ipairs(n.nodes) do
    local id = node.node_id
    nodes[#nodes + 1] = {
      node_id = id, role = t.role[id], subnet = node.subnet, ipv6_subnet = node.ipv6_subnet,
      routed_ipv6_subnet = node.routed_ipv6_subnet, mtu = node.facts.mtu,
      mesh_address = t.mesh[id], wireguard_listen_port = node.wireguard_listen_port,
      aggregators = t.aggregators[id], serves = t.carried[id] and #t.carried[id] or nil,
      exit = t.exit == id or nil,
    }
  end
  local devices = {}
  for _, a in ipairs(n.access or {}) do
    devices[#devices + 1] = { name = a.name, address = a.address, ipv6_address = a.ipv6_address, via = a.via }
  end
  local exposed = {}
  for i, e in ipairs(n.expose or {}) do
    exposed[i] = { node = e.node, address = e.address, proto = e.proto, port = e.port }
  end
  return {
    name = n.name, net_id = n.net_id, ip_range = n.ip_range, ipv6_range = n.ipv6_range,
    routed_ipv6 = n.routed_ipv6,
    exit = t.exit, exits = json.array(table.move(t.exits, 1, #t.exits, 1, {})), nodes = nodes,
    internet_targets = n.internet_targets and json.array(table.move(n.internet_targets, 1,
      #n.internet_targets, 1, {})) or nil,
    access = devices, expose = json.array(exposed),
    public = #t.public, hidden = #t.hidden,
  }
end

-- The network as the topology sees it; a network the topology cannot be
-- built for (e.g. hidden nodes only) still shows, as far as it can be
-- built, with the problem. A policy's fault is not such a problem: it
-- raises, as everywhere.
function net.show(n, opts)
  validate.network(n)
  local t = topology.build(n, policy_set(opts), { lenient = true })
  local s = net.summary(t)
  s.problem = t.problem
  return s
end

return net
