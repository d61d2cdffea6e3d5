-- The NR config of one node (what provisioning hands to that node's
-- networkd), from the network and its topology. Field names follow
-- DESIGN §7. Everything in it comes from the network file, including the
-- sealed private key, so rendering an unchanged network twice gives the
-- same bytes.
local json = require "zmesh.json"
local topology = require "zmesh.net.topology"

local render = {}

-- Peer entries and failover node maps already marked: most are shared
-- by every config of a topology (see topology.peers), and read-only.
local marked = setmetatable({}, { __mode = "k" })

local function arrays(peers)
  for _, p in ipairs(peers) do
    if not marked[p] then
      json.array(p.allowed_ips)
      marked[p] = true
    end
  end
  return json.array(peers)
end

-- The config table of node ID in topology T; raises when ID is unknown.
function render.node(t, id)
  local n = t.node[id]
  if not n then
    error(string.format("node: %s is not a node of network %s", require("zmesh.check").show(id), t.net.name), 0)
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
    -- The node map is the same table in every config of the topology.
    if not marked[f.nodes] then
      for _, n in pairs(f.nodes) do
        json.array(n.owned)
        if n.aggregators then json.array(n.aggregators) end
      end
      marked[f.nodes] = true
    end
  end
  return cfg
end

-- Compact JSON for configs, byte for byte what json.encode gives (sorted
-- keys), but fast: a network's configs hold N² peers, and the same
-- strings and AllowedIPs lists recur in all of them, so each is escaped
-- once. render.encoder() returns encode(config) → text and into(out,
-- config), which appends the text to list OUT in pieces (every config
-- of a network is hundreds of megabytes: one table.concat at the end
-- copies it once); both share one memory, so use one encoder per
-- topology (lists and peer entries are remembered by identity).
local config_keys = { "exit", "exit_for_network", "expose", "failover", "ip_range", "ipv6_range",
  "ipv6_subnet", "mesh_address", "mtu", "net_id", "network", "node_id", "peers", "routed_ipv6",
  "routed_ipv6_subnet", "subnet", "wireguard_listen_port", "wireguard_private_key",
  "wireguard_public_key" }
local peer_keys = { "allowed_ips", "endpoint", "node_id", "persistent_keepalive", "subnet",
  "wireguard_public_key" }

-- As json.encode decides.
local is_array = json.is_array

-- List L of strings that need no escaping as JSON, in one piece; nil
-- when an item is not such a string. Most lists of a config are
-- prefixes: two joins instead of a call per item.
local function plain_strings(l)
  local n = #l
  for i = 1, n do
    if type(l[i]) ~= "string" then return nil end
  end
  if table.concat(l):find("[^%w%.:_%-/+=%[%]]") then return nil end
  return '["' .. table.concat(l, '","') .. '"]'
end

function render.encoder()
  local strings, heads, lists = {}, {}, {}
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
  -- An object's key with its colon.
  local function head(k)
    local e = heads[k]
    if not e then
      e = value(k) .. ":"
      heads[k] = e
    end
    return e
  end
  local function list(l)
    local e = lists[l]
    if not e then
      e = #l > 0 and plain_strings(l)
      if not e then
        local parts = {}
        for i, v in ipairs(l) do parts[i] = strings[v] or value(v) end
        e = "[" .. table.concat(parts, ",") .. "]"
      end
      lists[l] = e
    end
    return e
  end
  local function object(o, keys, special)
    local parts = {}
    for _, k in ipairs(keys) do
      local v = o[k]
      if v ~= nil then
        parts[#parts + 1] = (heads[k] or head(k)) .. (special[k] and special[k](v) or value(v))
      end
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  -- Peer entries are shared between the configs of a topology (see
  -- topology.peers): each is encoded once, and kept twice: as the first
  -- of a list, and with its comma.
  local peer_special = { allowed_ips = list }
  local entries, later = setmetatable({}, { __mode = "k" }), setmetatable({}, { __mode = "k" })
  local function peers_into(out, n, ps)
    if #ps == 0 then
      out[n + 1] = "[]"
      return n + 1
    end
    n = n + 1
    out[n] = "["
    for i, p in ipairs(ps) do
      local e = entries[p]
      if not e then
        e = object(p, peer_keys, peer_special)
        entries[p], later[p] = e, "," .. e
      end
      out[n + i] = i == 1 and e or later[p]
    end
    n = n + #ps + 1
    out[n] = "]"
    return n
  end
  -- Any value as json.encode gives it (compact), each table reached
  -- remembered by identity: the failover facts' node map and lists are
  -- shared by every config of the topology.
  local tables = {}
  local function any(v)
    if type(v) ~= "table" then return strings[v] or value(v) end
    local e = tables[v]
    if e then return e end
    local parts = {}
    if is_array(v) then
      e = #v > 0 and plain_strings(v)
      if not e then
        for i = 1, #v do parts[i] = any(v[i]) end
        e = "[" .. table.concat(parts, ",") .. "]"
      end
    else
      local keys = {}
      for k in pairs(v) do
        -- json.encode raises its own message on such keys.
        if type(k) ~= "string" then return json.encode(v) end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      for i, k in ipairs(keys) do parts[i] = (heads[k] or head(k)) .. any(v[k]) end
      e = "{" .. table.concat(parts, ",") .. "}"
    end
    tables[v] = e
    return e
  end
  -- The failover facts: a table per config, around shared parts.
  local function failover(f)
    local keys = {}
    for k in pairs(f) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = head(k) .. any(f[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local function into(out, cfg)
    local n, sep = #out, "{"
    for _, k in ipairs(config_keys) do
      local v = cfg[k]
      if v ~= nil then
        out[n + 1] = sep .. head(k)
        sep, n = ",", n + 1
        if k == "peers" then
          n = peers_into(out, n, v)
        else
          out[n + 1] = k == "failover" and failover(v) or value(v)
          n = n + 1
        end
      end
    end
    out[n + 1] = sep == "{" and "{}" or "}"
  end
  local function encode(cfg)
    local out = {}
    into(out, cfg)
    return table.concat(out)
  end
  return encode, into
end

-- Every node's config, { [node_id] = config }.
function render.all(t)
  local out = {}
  for _, n in ipairs(t.net.nodes) do out[n.node_id] = render.node(t, n.node_id) end
  return out
end

return render
