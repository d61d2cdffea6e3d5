-- External access: a device outside the fleet (a laptop) joins the
-- network as a WireGuard client of one public NR, its aggregator. It gets
-- an address from the network's access subnet (a /24 taken like an NR's),
-- and a wg-quick config that is printed once: its private key is never
-- stored.
local ip = require "zmesh.ip"
local model = require "zmesh.net.model"

local access = {}

-- The first free host index (1 … 254) in the access subnet.
function access.free_index(net)
  local used = {}
  local sub = ip.parse_cidr(net.access_subnet)
  for _, a in ipairs(net.access or {}) do
    local p = ip.parse_cidr(a.address)
    if p then used[p.bytes[4]] = true end
  end
  for i = 1, 254 do
    if not used[i] then return i, sub end
  end
  return nil
end

-- The device's addresses for host index I.
function access.addresses(net, i)
  local v4 = ip.format_addr(ip.host(ip.parse_cidr(net.access_subnet), i)) .. "/32"
  local v6 = net.access_ipv6_subnet
    and (ip.format_addr(ip.host(ip.parse_cidr(net.access_ipv6_subnet), i)) .. "/128") or nil
  return v4, v6
end

-- The wg-quick config for DEVICE (an access entry of NET) with its
-- PRIVATE key, peering with VIA (the aggregator's node entry) at ENDPOINT.
function access.wg_quick(net, device, private, via, endpoint)
  local allowed = { net.ip_range, model.MESH_RANGE }
  if net.ipv6_range then allowed[#allowed + 1] = net.ipv6_range end
  local addrs = { device.address }
  if device.ipv6_address then addrs[#addrs + 1] = device.ipv6_address end
  return table.concat({
    string.format("# zmesh: device %s in network %s (net_id %s), via node %s",
      device.name, net.name, net.net_id, via.node_id),
    "# Keep this file private: it holds the device's private key.",
    "[Interface]",
    "PrivateKey = " .. private,
    "Address = " .. table.concat(addrs, ", "),
    "",
    "[Peer]",
    "# node " .. via.node_id,
    "PublicKey = " .. via.wireguard_public_key,
    "Endpoint = " .. endpoint,
    "AllowedIPs = " .. table.concat(allowed, ", "),
    "PersistentKeepalive = " .. model.KEEPALIVE,
    "",
  }, "\n")
end

return access
