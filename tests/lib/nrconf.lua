-- NR configs made by hand for node-side tests: keys generated in C, the
-- private key sealed to the node's key, peers with fresh keys.
local core = require "zmesh.core"

local nrconf = {}

-- NR config NET_ID for the node with FACTS: range 10.<k>.0.0/16, subnet
-- 10.<k>.<sub or 1>.0/24, port 51820 + k, NPEERS peers (subnets
-- 10.<k>.<i+1>.0/24, endpoints 203.0.113.<100+i>:51820) with KEEPALIVE.
-- OPTS.key: the NR's own private key (core.key object) to reuse.
function nrconf.make(facts, net_id, k, npeers, keepalive, opts)
  opts = opts or {}
  local key = opts.key or core.key.generate()
  local sub = opts.sub or 1
  local cfg = {
    net_id = net_id, network = "test", node_id = facts.node_id,
    ip_range = string.format("10.%d.0.0/16", k), subnet = string.format("10.%d.%d.0/24", k, sub),
    wireguard_private_key = key:seal(facts.public_key), wireguard_public_key = key:public(),
    wireguard_listen_port = opts.port or (51820 + k), peers = {},
  }
  if not opts.key then key:close() end
  for i = 1, npeers do
    local pk = core.key.generate()
    local s = i + sub
    cfg.peers[i] = { node_id = "p" .. i, subnet = string.format("10.%d.%d.0/24", k, s),
      wireguard_public_key = pk:public(),
      allowed_ips = { string.format("10.%d.%d.0/24", k, s), string.format("100.64.%d.%d/32", k, s) },
      endpoint = string.format("203.0.113.%d:51820", 100 + i), persistent_keepalive = keepalive }
    pk:close()
  end
  return cfg
end

return nrconf
