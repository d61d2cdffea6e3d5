-- The network file's data: a network is the user's whole definition (name,
-- ranges, exit, its NRs with their facts, subnets, ports and keys, and
-- external-access devices). Plain tables, as JSON stores them.
--
-- {
--   "format": 1, "name": "demo", "net_id": "k3v9q2…", "ip_range": "10.1.0.0/16",
--   "ipv6_range": "fd00:1::/48",            (optional)
--   "routed_ipv6": "2001:db8:100::/48",     (optional: a global prefix a
--                                             provider routes to the exit
--                                             node; each NR gets a /64)
--   "expose": [ { "node", "address", "proto", "port" } ],  (optional: what
--                                             the Internet may open, over
--                                             the routed prefix)
--   "exit": "n2" | ["n2", "n4"],            (optional: the sole exit NR, or
--                                             exit candidates in order)
--   "internet_targets": ["192.0.2.1"],      (optional: what exit candidates
--                                             ping to tell they carry traffic)
--   "nodes": [ { "node_id", "facts": {…node facts…}, "subnet", "ipv6_subnet",
--                "routed_ipv6_subnet" (with routed_ipv6: the NR's /64 of it),
--                "wireguard_listen_port", "wireguard_public_key",
--                "wireguard_private_key" (sealed to facts.public_key),
--                "sealed_to" (the node key it was sealed to),
--                "aggregators" (hidden nodes: the public nodes serving it,
--                  primary first, as recorded by the last change; the
--                  aggregator policy keeps this choice. Optional: a file
--                  without it renders as before and gets it on its next
--                  change) } ],
--   "access_subnet", "access_ipv6_subnet",  (once a device was added)
--   "access": [ { "name", "address", "ipv6_address", "wireguard_public_key",
--                 "via" (the aggregator it peers with) } ]
-- }
local ip = require "zmesh.ip"
local json = require "zmesh.json"

local model = {}

model.FORMAT = 1

-- Interface names are derived from net_id (w-<net_id> ≤ 15 characters).
model.NET_ID = "^[a-z0-9]+$"
model.NET_ID_MAX = 12
model.NODE_ID = "^[a-z0-9][a-z0-9_-]*$"
model.NODE_ID_MAX = 63
model.NAME = "^[%w][%w_.-]*$"
model.NAME_MAX = 64

-- The wg mesh addresses: 100.64.<b>.<c> for subnet a.<b>.<c>.0/24.
model.MESH_RANGE = "100.64.0.0/16"
model.KEEPALIVE = 25

-- The exit candidates of network N, in order (the first is the exit).
function model.exits(n)
  if n.exit == nil then return {} end
  if type(n.exit) == "string" then return { n.exit } end
  return table.move(n.exit, 1, #n.exit, 1, {})
end

-- The file's "exit" for candidates IDS: absent, one id, or the list.
function model.exit_field(ids)
  if #ids == 0 then return nil end
  if #ids == 1 then return ids[1] end
  return setmetatable(table.move(ids, 1, #ids, 1, {}), getmetatable(require("zmesh.json").array()))
end

function model.valid_node_id(s)
  return type(s) == "string" and #s <= model.NODE_ID_MAX and s:match(model.NODE_ID) ~= nil
end

function model.valid_name(s)
  return type(s) == "string" and #s <= model.NAME_MAX and s:match(model.NAME) ~= nil
end

-- The mesh address of a parsed /24, as text without prefix length.
function model.mesh_address(subnet)
  return string.format("100.64.%d.%d", subnet.bytes[2], subnet.bytes[3])
end

-- Can the /24 SUBNET (parsed) carry a mesh address? 100.64.0.0 and
-- 100.64.255.255 are the /16's network and broadcast addresses.
function model.mesh_usable(subnet)
  local b, c = subnet.bytes[2], subnet.bytes[3]
  return not ((b == 0 and c == 0) or (b == 255 and c == 255))
end

model.copy = json.copy

-- The node with id ID and its index in net.nodes, or nil.
function model.find_node(net, id)
  for i, n in ipairs(net.nodes) do
    if n.node_id == id then return n, i end
  end
  return nil
end

function model.find_access(net, name)
  for i, a in ipairs(net.access or {}) do
    if a.name == name then return a, i end
  end
  return nil
end

local function by(field)
  return function(a, b) return a[field] < b[field] end
end

-- Sorted lists, so that the file diffs well and renders are stable.
function model.sort(net)
  table.sort(net.nodes, by("node_id"))
  if net.access then table.sort(net.access, by("name")) end
  if net.expose then model.sort_expose(net.expose) end
end

-- JSON numbers arrive as floats; ports must print as integers.
local function integer(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  return v
end

function model.normalise(net)
  for _, n in ipairs(type(net.nodes) == "table" and net.nodes or {}) do
    if type(n) == "table" then
      n.wireguard_listen_port = integer(n.wireguard_listen_port)
      local lp = type(n.facts) == "table" and n.facts.listen_ports
      if type(lp) == "table" then lp.min, lp.max = integer(lp.min), integer(lp.max) end
      if type(n.facts) == "table" then n.facts.mtu = integer(n.facts.mtu) end
    end
  end
  for _, e in ipairs(type(net.expose) == "table" and net.expose or {}) do
    if type(e) == "table" then e.port = integer(e.port) end
  end
  net.format = integer(net.format)
  return net
end

function model.normalise_facts(facts)
  if type(facts) == "table" and type(facts.listen_ports) == "table" then
    local lp = facts.listen_ports
    lp.min, lp.max = integer(lp.min), integer(lp.max)
  end
  if type(facts) == "table" then facts.mtu = integer(facts.mtu) end
  return facts
end

-- A random id of 12 characters from [a-z0-9]: the kernel's names for the
-- NR come from it, so it never depends on user text.
function model.random_id()
  local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(model.NET_ID_MAX)
  if f then f:close() end
  local out = {}
  for i = 1, model.NET_ID_MAX do
    local b = bytes and bytes:byte(i) or math.random(0, 255)
    local k = b % #alphabet + 1
    out[i] = alphabet:sub(k, k)
  end
  return table.concat(out)
end

-- Parsed ranges of NET (assumed valid): IPv4, IPv6 (ULA), routed IPv6.
function model.ranges(net)
  return ip.parse_cidr(net.ip_range), net.ipv6_range and ip.parse_cidr(net.ipv6_range) or nil,
    net.routed_ipv6 and ip.parse_cidr(net.routed_ipv6) or nil
end

-- An uplink's MTU when its facts say none: Ethernet's.
model.DEFAULT_MTU = 1500
-- WireGuard's overhead over each underlay family (outer IP, UDP, its own
-- header and tag).
model.WG_OVERHEAD = { [4] = 60, [6] = 80 }
-- Less cannot carry IPv6 inside the mesh.
model.MIN_MTU = 1280

-- The exposures of NET in their canonical order.
function model.sort_expose(list)
  table.sort(list, function(a, b)
    if a.node ~= b.node then return a.node < b.node end
    if a.address ~= b.address then return a.address < b.address end
    if a.proto ~= b.proto then return a.proto < b.proto end
    return a.port < b.port
  end)
  return list
end

return model
