-- The ndmz: the node's uplink and the router towards every NR on the node,
-- in the carrier-grade NAT range (DESIGN §4).
local names = require "zmesh.node.names"

local ndmz = {}

local HOST = "host"

-- Desired resources for the ndmz from a validated node config.
-- opts.firewall: the ndmz's ruleset (from the firewall policy).
function ndmz.desired(cfg, opts)
  opts = opts or {}
  local ns, u = names.NDMZ, cfg.uplink
  local d = {
    { kind = "netns", name = ns },
    { kind = "sysctl", ns = ns, key = "net.ipv4.ip_forward", value = 1 },
    { kind = "sysctl", ns = ns, key = "net.ipv6.conf.all.forwarding", value = 1 },
    { kind = "link", ns = ns, name = "lo", type = "existing", up = true },
    { kind = "link", ns = ns, name = names.TONRS, type = "bridge", up = true },
    { kind = "addr", ns = ns, dev = names.TONRS, addr = names.TONRS_ADDR },
  }
  if u.mode == "macvlan" then
    -- Single NIC: the ndmz gets its own MAC on the node's NIC.
    d[#d + 1] = { kind = "link", ns = ns, name = names.UPLINK, type = "macvlan",
      parent = u.nic, parent_ns = HOST, up = true }
  else
    -- Dual NIC: the second NIC itself becomes the ndmz uplink.
    d[#d + 1] = { kind = "link", ns = ns, name = names.UPLINK, type = "moved",
      from = u.nic, from_ns = HOST, up = true }
  end
  for _, a in ipairs(u.addresses) do
    d[#d + 1] = { kind = "addr", ns = ns, dev = names.UPLINK, addr = a }
  end
  if u.gateway then
    d[#d + 1] = { kind = "route", ns = ns, family = 4, dst = "default", via = u.gateway,
      dev = names.UPLINK }
  end
  if u.gateway6 then
    d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = "default", via = u.gateway6,
      dev = names.UPLINK }
  end
  if opts.firewall then
    d[#d + 1] = { kind = "nft", ns = ns, ruleset = opts.firewall }
  end
  return d
end

return ndmz
