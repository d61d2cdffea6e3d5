-- The desired state of one network resource (DESIGN §4): its namespace,
-- uplink veth to the ndmz, WireGuard interface (born in the ndmz, living in
-- the NR), container bridge, routes and firewall.
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"

local desired = {}

-- CFG: a validated NR config. CTX: {uplink_addr = "100.127.x.y/16",
-- private_key (opened, core.key object), public_key, backend, log,
-- firewall (ruleset or nil)}.
function desired.nr(cfg, ctx)
  local id = cfg.net_id
  local ns, ndmz = names.nr_ns(id), names.NDMZ
  local wg, br = names.wg_if(id), names.bridge_if(id)
  local subnet = ip.parse_cidr(cfg.subnet)
  local gateway = ip.format_addr(ip.host(subnet, 1))
  local d = {
    { kind = "netns", name = ns },
    { kind = "sysctl", ns = ns, key = "net.ipv4.ip_forward", value = 1 },
    { kind = "sysctl", ns = ns, key = "net.ipv6.conf.all.forwarding", value = 1 },
    -- The NR's links are virtual and its own: duplicate address detection
    -- would only hold IPv6 back for seconds after each link comes up.
    { kind = "sysctl", ns = ns, key = "net.ipv6.conf.default.accept_dad", value = 0 },
    -- An aggregator forwards from the tunnel back into it: that is its
    -- job, not a reason to tell the sender of a better route.
    { kind = "sysctl", ns = ns, key = "net.ipv4.conf.all.send_redirects", value = 0 },
    { kind = "link", ns = ns, name = "lo", type = "existing", up = true },
    -- Uplink: made from the ndmz side, its NR end named "public".
    { kind = "link", ns = ndmz, name = names.ndmz_port(id), type = "veth",
      peer = names.UPLINK, peer_ns = ns, master = names.TONRS, up = true },
    { kind = "link", ns = ns, name = names.UPLINK, type = "veth_end", up = true },
    { kind = "addr", ns = ns, dev = names.UPLINK, addr = ctx.uplink_addr },
    -- WireGuard: born in the ndmz so its UDP socket uses the node's uplink.
    { kind = "link", ns = ns, name = wg, type = "wireguard", birth_ns = ndmz,
      backend = ctx.backend, log = ctx.log, up = true },
    { kind = "addr", ns = ns, dev = wg, addr = cfg.mesh_address },
    { kind = "wg", ns = ns, name = wg, private_key = ctx.private_key,
      public_key = ctx.public_key, listen_port = cfg.listen_port, peers = cfg.peers },
    -- The user network's range goes into the tunnel; wg picks the peer.
    { kind = "route", ns = ns, family = 4, dst = cfg.ip_range, dev = wg },
    -- Containers.
    { kind = "link", ns = ns, name = br, type = "bridge", up = true },
    { kind = "addr", ns = ns, dev = br, addr = gateway .. "/24" },
  }
  if cfg.ipv6_subnet then
    -- IPv6 inside the mesh: the NR's /64 on its bridge, the network's
    -- prefix into the tunnel.
    local v6 = ip.parse_cidr(cfg.ipv6_subnet)
    d[#d + 1] = { kind = "addr", ns = ns, dev = br, addr = ip.format_addr(ip.host(v6, 1)) .. "/64" }
    if cfg.ipv6_range then
      d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = cfg.ipv6_range, dev = wg }
    end
    if cfg.exit == "mesh" then
      d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = "default", dev = wg }
    end
  end
  if cfg.exit == "mesh" then
    -- Sole exit elsewhere: everything leaves through the tunnel.
    d[#d + 1] = { kind = "route", ns = ns, family = 4, dst = "default", dev = wg }
  else
    d[#d + 1] = { kind = "route", ns = ns, family = 4, dst = "default", via = names.TONRS_GATEWAY,
      dev = names.UPLINK }
  end
  if ctx.firewall then
    d[#d + 1] = { kind = "nft", ns = ns, ruleset = ctx.firewall }
  end
  return d
end

-- What the NR apply owns exclusively (pruned when not desired).
function desired.nr_owned_routes(cfg) return { names.nr_ns(cfg.net_id) } end

-- A container attached to an NR: its eth0 with an address in the subnet
-- (and in the NR's /64 when given). CFG: the validated NR config;
-- C: {netns, ip, ip6, port (the NR end's name, allocated by the caller)}.
function desired.container(cfg, c)
  local id = cfg.net_id
  local ns = names.nr_ns(id)
  local subnet = ip.parse_cidr(cfg.subnet)
  local d = {
    { kind = "sysctl", ns = c.netns, key = "net.ipv6.conf.default.accept_dad", value = 0 },
    { kind = "link", ns = c.netns, name = "lo", type = "existing", up = true },
    { kind = "link", ns = ns, name = c.port, type = "veth",
      peer = names.CONTAINER_IF, peer_ns = c.netns, master = names.bridge_if(id), up = true },
    { kind = "link", ns = c.netns, name = names.CONTAINER_IF, type = "veth_end", up = true },
    { kind = "addr", ns = c.netns, dev = names.CONTAINER_IF, addr = c.ip .. "/" .. subnet.len },
    { kind = "route", ns = c.netns, family = 4, dst = "default",
      via = ip.format_addr(ip.host(subnet, 1)),
      dev = names.CONTAINER_IF },
  }
  if c.ip6 then
    local v6 = ip.parse_cidr(cfg.ipv6_subnet)
    d[#d + 1] = { kind = "addr", ns = c.netns, dev = names.CONTAINER_IF, addr = c.ip6 .. "/64" }
    d[#d + 1] = { kind = "route", ns = c.netns, family = 6, dst = "default",
      via = ip.format_addr(ip.host(v6, 1)), dev = names.CONTAINER_IF }
  end
  return d
end

return desired
