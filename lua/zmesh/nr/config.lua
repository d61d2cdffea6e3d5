-- The NR config a node receives from provisioning (rendered by the network
-- tool, DESIGN §7), validated before anything is touched.
local check = require "zmesh.check"
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"

local config = {}

local CGNAT = ip.parse_cidr("100.64.0.0/10")

-- 100.64.<b>.<c>/16 for subnet a.<b>.<c>.0/24: the NR's wg mesh address.
function config.mesh_address(subnet)
  local p = ip.parse_cidr(subnet)
  return string.format("100.64.%d.%d/16", p.bytes[2], p.bytes[3])
end

local function check_peer(p, i, own_key)
  local where = string.format("peers[%d]", i)
  if type(p) ~= "table" then check.fail(where, p, "must be an object") end
  check.known_fields(p, { "node_id", "subnet", "wireguard_public_key", "allowed_ips",
    "endpoint", "persistent_keepalive" }, where)
  local out = { node_id = p.node_id }
  out.public_key = check.wg_key(p.wireguard_public_key, where .. ".wireguard_public_key")
  if out.public_key == own_key then
    check.fail(where .. ".wireguard_public_key", out.public_key, "is this NR's own key")
  end
  if p.subnet then out.subnet = check.prefix(p.subnet, where .. ".subnet") end
  -- A backup aggregator is a standby peer: keepalives, no routes.
  if type(p.allowed_ips) ~= "table" then
    check.fail(where .. ".allowed_ips", nil, "must be a list of prefixes")
  end
  out.allowed_ips = {}
  for k, a in ipairs(p.allowed_ips) do
    out.allowed_ips[k] = check.prefix(a, string.format("%s.allowed_ips[%d]", where, k))
  end
  if p.endpoint ~= nil then out.endpoint = check.endpoint(p.endpoint, where .. ".endpoint") end
  if p.persistent_keepalive ~= nil then
    out.persistent_keepalive = check.integer(p, "persistent_keepalive", 0, 65535)
  end
  return out
end

-- Validate a decoded NR config; returns a normalised copy. The sealed
-- private key is kept as is (it opens only with the node's key).
function config.validate(c)
  if type(c) ~= "table" then error("NR config must be a JSON object", 0) end
  check.known_fields(c, { "net_id", "network", "node_id", "ip_range", "subnet",
    "ipv6_range", "ipv6_subnet", "wireguard_private_key", "wireguard_public_key",
    "wireguard_listen_port", "mesh_address", "exit", "exit_for_network", "peers" })
  local out = {}
  out.net_id = check.string(c, "net_id")
  if not names.valid_net_id(out.net_id) then
    check.fail("net_id", out.net_id, "must be 1..12 of a-z 0-9")
  end
  out.network = check.string(c, "network", true)
  out.node_id = check.string(c, "node_id", true)
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
  if c.ipv6_range then out.ipv6_range = check.prefix(c.ipv6_range, "ipv6_range", 6) end
  if c.ipv6_subnet then out.ipv6_subnet = check.prefix(c.ipv6_subnet, "ipv6_subnet", 6) end
  out.sealed_private_key = check.string(c, "wireguard_private_key")
  if not out.sealed_private_key:match("^[A-Za-z0-9+/]+=*$") then
    check.fail("wireguard_private_key", nil, "must be a sealed key in base64")
  end
  if c.wireguard_public_key ~= nil then
    out.public_key = check.wg_key(c.wireguard_public_key, "wireguard_public_key")
  end
  out.listen_port = check.integer(c, "wireguard_listen_port", 1, 65535)
  out.exit = check.oneof(c, "exit", { "local", "mesh" }, true) or "local"
  out.exit_for_network = check.boolean(c, "exit_for_network", true) or false
  out.peers = {}
  local seen, prefixes = {}, {}
  for i, p in ipairs(check.table(c, "peers")) do
    local peer = check_peer(p, i, out.public_key)
    if seen[peer.public_key] then
      check.fail(string.format("peers[%d].wireguard_public_key", i), peer.public_key,
        "is also peers[" .. seen[peer.public_key] .. "]")
    end
    seen[peer.public_key] = i
    for k, a in ipairs(peer.allowed_ips) do
      local pa = ip.parse_cidr(a)
      for _, other in ipairs(prefixes) do
        -- The sole exit's 0.0.0.0/0 and ::/0 hold every other prefix by
        -- design; WireGuard takes the longest match.
        if pa.len > 0 and other.p.len > 0 and ip.overlaps(pa, other.p) then
          check.fail(string.format("peers[%d].allowed_ips[%d]", i, k), a,
            string.format("overlaps %s of peers[%d]", other.text, other.peer))
        end
      end
      prefixes[#prefixes + 1] = { p = pa, text = a, peer = i }
    end
    out.peers[i] = peer
  end
  if out.exit == "mesh" then
    local has_default = false
    for _, pr in ipairs(prefixes) do if pr.p.len == 0 and pr.p.family == 4 then has_default = true end end
    if not has_default then
      check.fail("exit", "mesh", "no peer carries 0.0.0.0/0 (the sole exit's peer must)")
    end
  end
  return out
end

return config
