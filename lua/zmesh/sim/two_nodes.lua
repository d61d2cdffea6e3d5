-- The walking skeleton: two public simulated nodes, one NR each of network
-- 10.1.0.0/16 (subnets 10.1.1.0/24 and 10.1.2.0/24), one container per NR.
-- NR configs are made here by hand (keys generated in C and sealed to each
-- node's key); the network tool renders them for larger meshes.
local core = require "zmesh.core"

local two_nodes = {}

two_nodes.NET_ID = "skel1"
two_nodes.nodes = {
  { id = "n1", addr = "203.0.113.11/24", endpoint = "203.0.113.11", subnet = "10.1.1.0/24",
    mesh = "100.64.1.1", container = "c1", ip = "10.1.1.10" },
  { id = "n2", addr = "203.0.113.12/24", endpoint = "203.0.113.12", subnet = "10.1.2.0/24",
    mesh = "100.64.1.2", container = "c2", ip = "10.1.2.10" },
}

local function step(log, what, ok, err)
  if not ok then error(what .. ": " .. tostring(err), 0) end
  if log then log(what) end
  return ok
end

-- Build it in simulation S. LOG(line) narrates. Returns the NR configs.
function two_nodes.build(S, log)
  S:internet()
  local facts, keys = {}, {}
  for _, n in ipairs(two_nodes.nodes) do
    S:node { id = n.id, addr = n.addr }
    step(log, n.id .. ": node.start (ndmz up)", S:call(n.id, "node.start", {}))
    facts[n.id] = step(log, n.id .. ": node.facts", S:call(n.id, "node.facts", {}))
    keys[n.id] = core.key.generate()
  end
  local configs = {}
  for i, n in ipairs(two_nodes.nodes) do
    local other = two_nodes.nodes[3 - i]
    configs[n.id] = {
      net_id = two_nodes.NET_ID, network = "skeleton", node_id = n.id,
      ip_range = "10.1.0.0/16", subnet = n.subnet,
      wireguard_private_key = keys[n.id]:seal(facts[n.id].public_key),
      wireguard_public_key = keys[n.id]:public(),
      wireguard_listen_port = 51820,
      peers = { {
        node_id = other.id, subnet = other.subnet,
        wireguard_public_key = keys[other.id]:public(),
        allowed_ips = { other.subnet, other.mesh .. "/32" },
        endpoint = other.endpoint .. ":51820",
      } },
    }
  end
  for _, k in pairs(keys) do k:close() end
  for _, n in ipairs(two_nodes.nodes) do
    step(log, n.id .. ": nr.apply " .. n.subnet, S:call(n.id, "nr.apply", configs[n.id]))
    step(log, n.id .. ": container.attach " .. n.container .. " " .. n.ip,
      S:call(n.id, "container.attach", { net_id = two_nodes.NET_ID, netns = n.container,
        ip = n.ip, create = true }))
  end
  return configs
end

return two_nodes
