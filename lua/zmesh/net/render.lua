-- The NR config of one node (what provisioning hands to that node's
-- networkd), from the network and its topology. Field names follow
-- DESIGN §7. Everything in it comes from the network file, including the
-- sealed private key, so rendering an unchanged network twice gives the
-- same bytes.
local json = require "zmesh.json"
local topology = require "zmesh.net.topology"

local render = {}

local function arrays(peers)
  for _, p in ipairs(peers) do json.array(p.allowed_ips) end
  return json.array(peers)
end

-- The config table of node ID in topology T; raises when ID is unknown.
function render.node(t, id)
  local n = t.node[id]
  if not n then
    error(string.format("node: '%s' is not a node of network %s", tostring(id), t.net.name), 0)
  end
  local net = t.net
  local peers = topology.peers(t, id)
  local expose = topology.expose(t, id)
  if expose then json.array(expose) end
  local cfg = {
    net_id = net.net_id,
    network = net.name,
    node_id = id,
    ip_range = net.ip_range,
    subnet = n.subnet,
    mesh_address = t.mesh[id] .. "/16",
    ipv6_range = net.ipv6_range,
    ipv6_subnet = n.ipv6_subnet,
    wireguard_private_key = n.wireguard_private_key,
    wireguard_public_key = n.wireguard_public_key,
    wireguard_listen_port = n.wireguard_listen_port,
    routed_ipv6 = net.routed_ipv6,
    routed_ipv6_subnet = n.routed_ipv6_subnet,
    expose = expose,
    mtu = topology.mtu(t, id, peers),
    exit = topology.exit_hop(t, id) and "mesh" or "local",
    exit_for_network = (t.exit == id) or nil,
    peers = arrays(peers),
    failover = topology.failover(t, id),
  }
  if cfg.failover then
    local f = cfg.failover
    -- Lists are lists also when empty or shared (json cannot tell).
    for _, k in ipairs({ "exits", "aggregators", "range", "hidden", "internet_targets" }) do
      if f[k] then json.array(f[k]) end
    end
    for _, n in pairs(f.nodes) do
      json.array(n.owned)
      if n.aggregators then json.array(n.aggregators) end
    end
  end
  return cfg
end

-- Compact JSON for configs, byte for byte what json.encode gives (sorted
-- keys), but fast: a network's configs hold N² peers, and the same
-- strings and AllowedIPs lists recur in all of them, so each is escaped
-- once. render.encoder() returns encode(config) with its own memory;
-- use one per topology (lists are remembered by identity).
local config_keys = { "exit", "exit_for_network", "expose", "failover", "ip_range", "ipv6_range",
  "ipv6_subnet", "mesh_address", "mtu", "net_id", "network", "node_id", "peers", "routed_ipv6",
  "routed_ipv6_subnet", "subnet", "wireguard_listen_port", "wireguard_private_key",
  "wireguard_public_key" }
local peer_keys = { "allowed_ips", "endpoint", "node_id", "persistent_keepalive", "subnet",
  "wireguard_public_key" }

function render.encoder()
  local strings, lists = {}, {}
  local function value(v)
    if type(v) == "string" then
      local e = strings[v]
      if not e then
        -- Ids, prefixes, endpoints and base64 need no escaping.
        e = v:find("[^%w%.:_%-/+=%[%]]") and json.encode(v) or ('"' .. v .. '"')
        strings[v] = e
      end
      return e
    end
    return json.encode(v)
  end
  local function list(l)
    local e = lists[l]
    if not e then
      local parts = {}
      for i, v in ipairs(l) do parts[i] = value(v) end
      e = "[" .. table.concat(parts, ",") .. "]"
      lists[l] = e
    end
    return e
  end
  local function object(o, keys, special)
    local parts = {}
    for _, k in ipairs(keys) do
      local v = o[k]
      if v ~= nil then
        parts[#parts + 1] = value(k) .. ":" .. (special[k] and special[k](v) or value(v))
      end
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local peer_special = { allowed_ips = list }
  local function peers(ps)
    local parts = {}
    for i, p in ipairs(ps) do parts[i] = object(p, peer_keys, peer_special) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  -- The failover facts: their node map is one table for every public
  -- config of the topology, encoded once.
  local objects = {}
  local function failover(f)
    local parts = {}
    local keys = {}
    for k in pairs(f) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = f[k]
      local e
      if k == "nodes" then
        e = objects[v]
        if not e then
          e = json.encode(v)
          objects[v] = e
        end
      elseif type(v) == "table" then
        e = lists[v] or json.encode(v)
        lists[v] = e
      else
        e = json.encode(v)
      end
      parts[#parts + 1] = value(k) .. ":" .. e
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local config_special = { peers = peers, failover = failover }
  return function(cfg) return object(cfg, config_keys, config_special) end
end

-- Every node's config, { [node_id] = config }.
function render.all(t)
  local out = {}
  for _, n in ipairs(t.net.nodes) do out[n.node_id] = render.node(t, n.node_id) end
  return out
end

return render
