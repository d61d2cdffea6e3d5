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

-- A new, empty network. P: { name, ip_range, ipv6_range?, net_id? }.
function net.new(p)
  if type(p) ~= "table" then error("network: parameters must be a table", 0) end
  local n = {
    format = model.FORMAT, name = p.name, ip_range = p.ip_range, ipv6_range = p.ipv6_range,
    net_id = p.net_id or model.random_id(), nodes = {},
  }
  return validate.network(n)
end

-- Every /24 and /64 in use, as canonical text → true.
local function used_subnets(n, skip)
  local used, used6 = {}, {}
  local function mark(s, s6)
    if s then used[ip.format_cidr(ip.parse_cidr(s))] = true end
    if s6 then used6[ip.format_cidr(ip.parse_cidr(s6))] = true end
  end
  for _, node in ipairs(n.nodes) do
    if node.node_id ~= skip then mark(node.subnet, node.ipv6_subnet) end
  end
  if n.access and #n.access > 0 then mark(n.access_subnet, n.access_ipv6_subnet) end
  return used, used6
end

-- Ask the subnet policy for ID's subnets; FIXED is the user's /24, if any.
local function pick_subnets(n, set, id, fixed)
  local range, range6 = model.ranges(n)
  local used, used6 = used_subnets(n, id)
  return policies.subnet(set, {
    node_id = id, ip_range = n.ip_range, ipv6_range = n.ipv6_range, subnet = fixed,
    used = used, used_ipv6 = used6,
    usable = function(cidr)
      local p = ip.parse_cidr(cidr)
      return p ~= nil and p.family == 4 and p.len == 24 and model.mesh_usable(p)
    end,
  }, range, range6)
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
end

-- A copy of FACTS without JSON array marks (the file marks its own).
local function clean_facts(facts)
  if type(facts) ~= "table" then return facts end
  local f = model.copy(facts)
  for _, k in ipairs({ "addresses", "public_endpoints" }) do
    if type(f[k]) == "table" then f[k] = table.move(f[k], 1, #f[k], 1, {}) end
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
  remember(out, set)
  local node = old or { node_id = f.node_id }
  node.facts = f
  local subnet = opts.subnet or (old and old.subnet)
  local subnet6 = opts.ipv6_subnet or (old and old.ipv6_subnet)
  if not subnet or (n.ipv6_range and not subnet6) then
    local picked = pick_subnets(out, set, f.node_id, subnet)
    subnet, subnet6 = subnet or picked.subnet, subnet6 or picked.ipv6_subnet
  end
  node.subnet, node.ipv6_subnet = subnet, n.ipv6_range and subnet6 or nil
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
  remember(out, set)
  return out, node
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
  remember(out, set)
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
  -- Before validating: the record must no longer name the removed node.
  remember(out, set)
  validate.network(out)
  return out, notes
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
  -- What the exit candidates ping to tell they reach the Internet.
  if opts and opts.internet_targets then
    out.internet_targets = json.array(table.move(opts.internet_targets, 1, #opts.internet_targets, 1, {}))
  end
  validate.network(out)
  remember(out, policy_set(opts))
  return out
end

-- Add external device NAME. OPTS.via: the public node it peers with (else
-- the aggregator policy picks). Returns the new network, the wg-quick
-- config for the device (holding its private key: print it, never store
-- it), and the device's entry.
function net.add_access(n, name, opts)
  opts = opts or {}
  local set = policy_set(opts)
  local t = net.topology(n, { policies = set })
  if not model.valid_name(name) then validate.fail("name", name, "must match [A-Za-z0-9][A-Za-z0-9_.-]*") end
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

-- Every config as one JSON object keyed by node id, compact.
function net.render_all_json(n, opts)
  local t = net.topology(n, opts)
  local encode, parts = render.encoder(), {}
  for _, node in ipairs(n.nodes) do
    parts[#parts + 1] = json.encode(node.node_id) .. ":" .. encode(render.node(t, node.node_id))
  end
  return "{" .. table.concat(parts, ",") .. "}"
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
      mesh_address = t.mesh[id], wireguard_listen_port = node.wireguard_listen_port,
      aggregators = t.aggregators[id], serves = t.carried[id] and #t.carried[id] or nil,
      exit = t.exit == id or nil,
    }
  end
  local devices = {}
  for _, a in ipairs(n.access or {}) do
    devices[#devices + 1] = { name = a.name, address = a.address, ipv6_address = a.ipv6_address, via = a.via }
  end
  return {
    name = n.name, net_id = n.net_id, ip_range = n.ip_range, ipv6_range = n.ipv6_range,
    exit = t.exit, exits = json.array(table.move(t.exits, 1, #t.exits, 1, {})), nodes = nodes,
    access = devices,
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
