-- The network's topology, decided by the policies (DESIGN §5):
--   · public NRs form a full mesh; each peer carries its own /24, its wg
--     mesh address 100.64.b.c/32 and its IPv6 /64;
--   · a hidden NR peers with its aggregators only (primary first), with an
--     endpoint and a keepalive; the primary carries the whole network;
--   · an aggregator lists its hidden NRs without endpoint; other public
--     NRs reach those /24s through the aggregator's peer;
--   · with a sole exit, every other NR sends 0.0.0.0/0 and ::/0 to the peer
--     that leads to the exit;
--   · a routed IPv6 prefix (routed_ipv6) enters the network at the exit:
--     each NR owns its /64 of it like its /24, so the same paths carry
--     it, and the exit candidates must be public nodes with global IPv6.
-- Each NR's WireGuard MTU (when a node's facts give its uplink's MTU) is
-- the smallest its peers' paths allow: the smaller uplink MTU of the two
-- ends, less WireGuard's overhead over the family they talk over.
-- External devices (add-access) are served like hidden NRs by the
-- aggregator they were given ("via"); their id here is "access:NAME".
-- The aggregator policy gets the choice in force, each hidden node's
-- recorded "aggregators", so that it can keep it (policies/aggregator.lua).
local ip = require "zmesh.ip"
local model = require "zmesh.net.model"
local policies = require "zmesh.net.policies"

local topology = {}

local DEFAULTS = { "0.0.0.0/0", "::/0" }

local function endpoint_text(addr, port)
  if addr:find(":", 1, true) then return string.format("[%s]:%d", addr, port) end
  return string.format("%s:%d", addr, port)
end

local function list_ids(ids)
  if #ids > 3 then return table.concat(ids, ", ", 1, 3) .. ", …" end
  return table.concat(ids, ", ")
end

-- Facts of a node or device, as the role policy sees them.
local function facts_of(t, id)
  local n = t.node[id]
  if n then return n.facts end
  return t.device_facts[id]
end

-- The address ID dials to reach public node P (text), or nil; cached,
-- since reachability checks and renders ask for the same pairs.
function topology.dial(t, id, p)
  local row = t.dials[id]
  if not row then row = {} t.dials[id] = row end
  local a = row[p]
  if a == nil then
    a = policies.endpoint(t.set, facts_of(t, id), t.node[p].facts) or false
    row[p] = a
  end
  return a or nil
end

-- "addr:port" of P dialled at address A; two NRs behind one address
-- must not share a port.
local function endpoint_at(t, p, a)
  local texts = t.endpoints[p]
  if not texts then texts = {} t.endpoints[p] = texts end
  local ep = texts[a]
  if ep then return ep end
  local port = t.node[p].wireguard_listen_port
  ep = endpoint_text(a, port)
  local owner = t.listeners[ep]
  if owner and owner ~= p then
    error(string.format("nodes[%s].wireguard_listen_port: %d clashes with node %s: both listen on %s",
      p, port, owner, ep), 0)
  end
  t.listeners[ep], texts[a] = p, ep
  return ep
end

-- "addr:port" of P as ID dials it, or nil.
function topology.endpoint(t, id, p)
  local a = topology.dial(t, id, p)
  if not a then return nil end
  return endpoint_at(t, p, a)
end

-- A network problem (not a policy's fault): raised, and remembered so
-- that a lenient build can tell it from a policy's error.
local function problem(t, fmt, ...)
  local msg = string.format(fmt, ...)
  t.raised = msg
  error(msg, 0)
end

local function reachable(t, h, p)
  return t.role[p] == "public" and topology.dial(t, h, p) ~= nil
end

-- The choice in force for each node of IDS that has one: its recorded
-- "aggregators", cut down to public NRs it can reach. A stale entry (a
-- removed node, one that turned hidden) is dropped here, so the policy
-- sees only live candidates.
function topology.current(t, ids)
  local out = {}
  for _, id in ipairs(ids) do
    local rec = t.node[id] and t.node[id].aggregators
    if type(rec) == "table" then
      local list = {}
      for _, p in ipairs(rec) do
        if type(p) == "string" and reachable(t, id, p) then list[#list + 1] = p end
      end
      if #list > 0 then out[id] = list end
    end
  end
  return out
end

local function assign_aggregators(t)
  local net = t.net
  local need = {}
  for _, h in ipairs(t.hidden) do need[#need + 1] = h end
  if #need == 0 then return end
  if #t.public == 0 then
    problem(t, "network %s has hidden nodes (%s) but no public node to serve as their aggregator: "
      .. "add a node with a public address, or one whose farmer set force_role \"public\"",
      net.name, list_ids(t.hidden))
  end
  -- Asked only when the policy leaves a hidden NR unserved: was that the
  -- network's fault (nothing reachable) or the policy's?
  local function unserved(h)
    for _, p in ipairs(t.public) do
      if topology.dial(t, h, p) then return end
    end
    problem(t, "nodes[%s]: hidden node %s can reach no public node (no address family in common)", h, h)
  end
  local result = policies.aggregators(t.set, unserved, {
    net_id = net.net_id,
    hidden = table.move(need, 1, #need, 1, {}),
    public = table.move(t.public, 1, #t.public, 1, {}),
    reachable = function(h, p) return reachable(t, h, p) end,
    current = topology.current(t, need),
  })
  for _, h in ipairs(need) do t.aggregators[h] = table.move(result[h], 1, #result[h], 1, {}) end
end

-- Which hidden NRs and devices each public NR serves, as primary
-- (carried) or backup (standby), in id order.
local function index_service(t)
  local ids = {}
  for h in pairs(t.aggregators) do ids[#ids + 1] = h end
  table.sort(ids)
  for _, p in ipairs(t.public) do t.carried[p], t.standby[p] = {}, {} end
  for _, h in ipairs(ids) do
    for i, p in ipairs(t.aggregators[h]) do
      local list = i == 1 and t.carried[p] or t.standby[p]
      list[#list + 1] = h
    end
  end
end

-- Run STEP(t, …). Strict, a network problem raises; lenient, it is kept
-- in t.problem (the first one) and the build goes on without that step,
-- so that the policies after it still run. A policy's error always raises.
local function step(t, fn, ...)
  if not t.lenient then return fn(t, ...) end
  t.raised = nil
  local ok, err = pcall(fn, t, ...)
  if ok then return end
  if t.raised == nil or err ~= t.raised then error(err, 0) end
  t.problem = t.problem or err
end

local function add_device(t, a)
  local id = "access:" .. a.name
  if t.role[a.via] ~= "public" then
    problem(t, "access[%s].via: '%s' is a hidden node; devices need a public one", a.name, a.via)
  end
  t.devices[#t.devices + 1] = id
  t.device[id] = a
  t.device_facts[id] = { node_id = id, addresses = {} }
  t.owned[id] = { a.address, a.ipv6_address }
  t.aggregators[id] = { a.via }
end

-- Does node ID's facts have a global IPv6 address (the entry point
-- forwards the routed prefix over it)?
local function has_global6(t, id)
  for _, s in ipairs(t.node[id].facts.addresses) do
    local a = ip.parsed(s)
    local class = a and a.family == 6 and ip.classify(a)
    if class == "global" or class == "documentation" then return true end
  end
  return false
end

-- Why an exit of T (each fallback too) cannot be the entry point of its
-- routed prefix: a hidden node, or one without global IPv6; nil when
-- every one can.
function topology.entry_problem(t)
  local net = t.net
  for i, id in ipairs(t.exits) do
    local field = #t.exits == 1 and "exit" or string.format("exit[%d]", i)
    if t.role[id] ~= "public" then
      return string.format("%s: '%s' is a hidden node: the entry point of routed_ipv6 %s must be public", field,
        id, net.routed_ipv6)
    end
    if not has_global6(t, id) then
      return string.format("%s: '%s' has no global IPv6 address in its facts: it cannot be the entry point of "
        .. "routed_ipv6 %s", field, id, net.routed_ipv6)
    end
  end
end

-- A routed prefix needs an entry point: the exit, and each of its
-- fallbacks, a public node with global IPv6.
local function check_entry(t)
  if #t.exits == 0 then
    problem(t, "routed_ipv6: %s has no entry point: the exit NR is the routed prefix's entry point "
      .. "(zmesh net set-exit FILE NODE)", t.net.routed_ipv6)
  end
  local why = topology.entry_problem(t)
  if why then problem(t, "%s", why) end
end

-- Build the topology of NET (validated) with the policy SET; raises a
-- message on an impossible network or a policy failure. OPTS.lenient:
-- an impossible network (e.g. hidden nodes only) still builds, as far
-- as it can, with the first problem in t.problem, for show and the
-- file's record, not for rendering; a policy failure still raises.
function topology.build(net, set, opts)
  local t = {
    net = net, set = set, node = {}, role = {}, public = {}, hidden = {},
    owned = {}, mesh = {}, aggregators = {}, carried = {}, standby = {},
    devices = {}, device = {}, device_facts = {}, dials = {}, listeners = {}, endpoints = {},
    shared = {}, via = {}, peer_entries = {}, lenient = opts and opts.lenient or nil,
  }
  for _, n in ipairs(net.nodes) do
    local id = n.node_id
    t.node[id] = n
    local role = policies.role(set, n.facts)
    t.role[id] = role
    local list = role == "public" and t.public or t.hidden
    list[#list + 1] = id
    t.mesh[id] = model.mesh_address(ip.parsed(n.subnet))
    local owned = { n.subnet, t.mesh[id] .. "/32" }
    if n.ipv6_subnet then owned[#owned + 1] = n.ipv6_subnet end
    if n.routed_ipv6_subnet then owned[#owned + 1] = n.routed_ipv6_subnet end
    t.owned[id] = owned
    if n.facts.mtu then t.mtus = true end
  end
  table.sort(t.public)
  table.sort(t.hidden)
  step(t, assign_aggregators)
  for _, a in ipairs(net.access or {}) do step(t, add_device, a) end
  index_service(t)
  -- Every id, sorted: peers are listed in this order.
  t.order = {}
  for id in pairs(t.owned) do t.order[#t.order + 1] = id end
  table.sort(t.order)
  local nodes = {}
  for i, n in ipairs(net.nodes) do nodes[i] = { node_id = n.node_id, role = t.role[n.node_id] } end
  t.exits = policies.exit(set, { chosen = net.exit, nodes = nodes })
  t.exit = t.exits[1]
  if net.routed_ipv6 then step(t, check_entry) end
  return t
end

-- The peer of X that leads towards node or device TO (for routing), or nil
-- when TO is X itself.
local function next_hop(t, x, to)
  if to == x then return nil end
  if t.role[x] == "hidden" then return t.aggregators[x][1] end
  local primary = t.aggregators[to] and t.aggregators[to][1]
  if primary and primary ~= x then return primary end
  return to
end
topology.next_hop = next_hop

-- Does X send its Internet traffic into the mesh? Then to which peer.
function topology.exit_hop(t, x)
  if not t.exit or t.exit == x then return nil end
  return next_hop(t, x, t.exit)
end

local function append(list, items)
  for _, v in ipairs(items) do list[#list + 1] = v end
end

-- AllowedIPs lists are shared between the configs of one topology (the
-- same peer appears in hundreds of them): build each once, and treat
-- the rendered lists as read-only.
local function shared(t, key, make)
  local v = t.shared[key]
  if not v then
    v = make()
    t.shared[key] = v
  end
  return v
end

-- The peer towards the sole exit carries 0.0.0.0/0 and ::/0, which hold
-- everything else it would carry: list just those, so that no list has
-- prefixes inside one another.
local function with_defaults()
  return table.move(DEFAULTS, 1, #DEFAULTS, 1, {})
end

-- What a public NR P carries for others: its own prefixes and those of
-- the hidden NRs and devices it is primary for (or, towards the exit,
-- everything).
local function via_public(t, p, exit)
  if exit then return shared(t, "exit", with_defaults) end
  local list = t.via[p]
  if not list then
    list = {}
    append(list, t.owned[p])
    for _, h in ipairs(t.carried[p]) do append(list, t.owned[h]) end
    t.via[p] = list
  end
  return list
end

-- What an aggregator routes to hidden NR (or device) H it is primary for.
local function to_hidden(t, h, exit)
  if exit then return shared(t, "exit", with_defaults) end
  return t.owned[h]
end

-- What a hidden NR routes to its primary: the whole network.
local function to_primary(t, exit)
  if exit then return shared(t, "exit", with_defaults) end
  return shared(t, "primary", function()
    local list = { t.net.ip_range, model.MESH_RANGE }
    if t.net.ipv6_range then list[#list + 1] = t.net.ipv6_range end
    if t.net.routed_ipv6 then list[#list + 1] = t.net.routed_ipv6 end
    return list
  end)
end

local function standby(t) return shared(t, "standby", function() return {} end) end

local function peer(t, id, allowed)
  local n, d = t.node[id], t.device[id]
  return {
    node_id = id,
    subnet = n and n.subnet or d.address,
    wireguard_public_key = (n or d).wireguard_public_key,
    allowed_ips = allowed,
  }
end

-- The peer entry of ID with ALLOWED and ENDPOINT (nil: none), shared
-- like its AllowedIPs: a public NR is the same entry in the configs of
-- every NR that dials it over the same address, so the entry is built
-- (and encoded, see render.encoder) once, not once per config.
local function shared_peer(t, id, allowed, endpoint)
  local by_list = t.peer_entries[id]
  if not by_list then by_list = {} t.peer_entries[id] = by_list end
  local by_ep = by_list[allowed]
  if not by_ep then by_ep = {} by_list[allowed] = by_ep end
  local key = endpoint or false
  local e = by_ep[key]
  if not e then
    e = peer(t, id, allowed)
    e.endpoint = endpoint
    by_ep[key] = e
  end
  return e
end

-- The peers of a hidden NR: its aggregators, primary first.
local function hidden_peers(t, x, exit_hop)
  local out = {}
  for i, a in ipairs(t.aggregators[x]) do
    local p = peer(t, a, i == 1 and to_primary(t, exit_hop == a) or standby(t))
    p.endpoint = topology.endpoint(t, x, a)
    p.persistent_keepalive = model.KEEPALIVE
    out[#out + 1] = p
  end
  return out
end

-- Lists A and B of peer entries, each in id order, merged in id order
-- (the ids are distinct: t.order's order, without scanning t.order).
local function merge(a, b)
  if #b == 0 then return a end
  local out, i, j = {}, 1, 1
  while a[i] and b[j] do
    if a[i].node_id < b[j].node_id then
      out[#out + 1], i = a[i], i + 1
    else
      out[#out + 1], j = b[j], j + 1
    end
  end
  table.move(a, i, #a, #out + 1, out)
  table.move(b, j, #b, #out + 1, out)
  return out
end

local function by_node_id(a, b) return a.node_id < b.node_id end

local function unreachable(x, p)
  return string.format("nodes[%s]: public node %s cannot reach public node %s (no address family in common); "
    .. "set force_role \"hidden\" on one of them, or public_endpoints", x, x, p)
end

-- Why public node X and another public node cannot peer (the first such
-- pair, either way round), or nil: public NRs form a full mesh.
function topology.public_unreachable(t, x)
  if t.role[x] ~= "public" then return nil end
  for _, p in ipairs(t.public) do
    if p ~= x then
      if not topology.dial(t, x, p) then return unreachable(x, p) end
      if not topology.dial(t, p, x) then return unreachable(p, x) end
    end
  end
end

-- The peers of a public NR: every other public NR (carrying what it
-- serves), and the hidden NRs and devices it serves itself; in id order.
local function public_peers(t, x, exit_hop)
  local out = {}
  local dial = topology.dial
  for _, p in ipairs(t.public) do
    if p ~= x then
      local a = dial(t, x, p)
      local ep = a and endpoint_at(t, p, a)
      if not ep then error(unreachable(x, p), 0) end
      out[#out + 1] = shared_peer(t, p, via_public(t, p, exit_hop == p), ep)
    end
  end
  local served = {}
  for _, h in ipairs(t.carried[x]) do served[#served + 1] = shared_peer(t, h, to_hidden(t, h, exit_hop == h)) end
  for _, h in ipairs(t.standby[x]) do served[#served + 1] = shared_peer(t, h, standby(t)) end
  table.sort(served, by_node_id)
  return merge(out, served)
end

-- What a node's daemon needs to fail over on its own, without a
-- re-render (zmesh.nr.paths, zmesh.daemon.failover): every node it may
-- route through and what each owns, every hidden NR's aggregators in
-- order, the exit candidates in order. Nil when nothing can fail over (no
-- hidden NR, no device, no sole exit). The tables are shared between the
-- configs of one topology; treat them as read-only.
local function node_facts(t, id)
  local hidden = t.aggregators[id]
  return {
    mesh = t.mesh[id],
    owned = t.owned[id],
    aggregators = hidden,
    device = t.device[id] and true or nil,
  }
end

function topology.failover(t, x)
  if #t.hidden == 0 and #t.devices == 0 and #t.exits == 0 then return nil end
  local f = {
    role = t.role[x],
    keepalive = model.KEEPALIVE,
    exits = #t.exits > 0 and t.exits or nil,
    internet_targets = t.net.internet_targets,
  }
  -- Every node: `zmesh node check` probes them all.
  f.nodes = shared(t, "fo:nodes", function()
    local nodes = {}
    for _, id in ipairs(t.order) do nodes[id] = node_facts(t, id) end
    return nodes
  end)
  if f.role == "hidden" then
    f.aggregators = t.aggregators[x]
    f.range = to_primary(t, false)
    return f
  end
  f.hidden = shared(t, "fo:hidden", function()
    local list = {}
    for _, h in ipairs(t.order) do if t.aggregators[h] then list[#list + 1] = h end end
    return list
  end)
  return f
end

-- The address family X and P talk over (4 or 6): the address one dials
-- to reach the other; 6 when unknown (a device: the larger overhead).
local function path_family(t, x, p)
  local a = (t.role[p] == "public" and topology.dial(t, x, p)) or (t.role[x] == "public" and t.node[p]
    and topology.dial(t, p, x))
  if not a then return 6 end
  return a:find(":", 1, true) and 6 or 4
end

local function uplink_mtu(t, id)
  local n = t.node[id]
  return n and n.facts.mtu or model.DEFAULT_MTU
end

-- The WireGuard MTU of NR X with PEERS (its rendered peers), or nil when
-- no node's facts give an MTU (the node derives it from its own uplink).
-- The smallest its paths allow: for each peer, the smaller uplink MTU of
-- the two ends less the overhead of the family they talk over; alone,
-- its own uplink's. Never under 1280 (IPv6's minimum).
function topology.mtu(t, x, peers)
  if not t.mtus then return nil end
  local own = uplink_mtu(t, x)
  local m
  for _, p in ipairs(peers) do
    local v = math.min(own, uplink_mtu(t, p.node_id)) - model.WG_OVERHEAD[path_family(t, x, p.node_id)]
    m = m and math.min(m, v) or v
  end
  m = m or (own - model.WG_OVERHEAD[has_global6(t, x) and 6 or 4])
  return math.max(m, model.MIN_MTU)
end

-- What NR X opens to the Internet over the routed prefix: every exposure
-- on an exit candidate (the entry point), its own elsewhere; nil for none.
function topology.expose(t, x)
  local list = t.net.expose
  if not list or #list == 0 then return nil end
  local entry = false
  for _, e in ipairs(t.exits) do if e == x then entry = true end end
  local out = {}
  for _, e in ipairs(list) do
    if entry or e.node == x then out[#out + 1] = { address = e.address, proto = e.proto, port = e.port } end
  end
  return #out > 0 and out or nil
end

-- The peers of NR X, as the NR config lists them.
function topology.peers(t, x)
  local exit_hop = topology.exit_hop(t, x)
  if t.role[x] == "hidden" then return hidden_peers(t, x, exit_hop) end
  return public_peers(t, x, exit_hop)
end

return topology
