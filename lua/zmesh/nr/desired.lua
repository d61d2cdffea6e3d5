-- The desired state of one network resource (DESIGN §4): its namespace,
-- uplink veth to the ndmz, WireGuard interface (born in the ndmz, living in
-- the NR), container bridge, routes and firewall.
--
-- IPv6: an NR with an IPv6 subnet (unique local, ipv6_subnet) or a routed
-- one (routed_ipv6_subnet) also has an IPv6 uplink towards the ndmz
-- (names.nr_uplink6, in names.NR_UPLINK6_RANGE), so that its IPv6 breaks
-- out locally like its IPv4 (masqueraded twice, by the NR and the ndmz)
-- or, on an exit candidate of a network with a routed prefix, enters and
-- leaves as it is: the ndmz routes the prefix to the NR (the entry point),
-- which routes each /64 through the tunnel to its NR.
--
-- MTU: the WireGuard link, the container bridge and the containers' links
-- all have the NR's MTU (desired.mtu): the smaller of what the network
-- tool rendered for the NR's paths (cfg.mtu) and what this node's uplink
-- allows for the families its peers use.
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"

local desired = {}

local OVERHEAD = { [4] = 60, [6] = 80 }
local MIN_MTU = 1280

-- The NR's WireGuard MTU given UPLINK (zmesh.nr.uplink.node_link): the uplink's MTU
-- less WireGuard's overhead over the underlay (IPv6 when a peer's
-- endpoint is IPv6, or when the node has IPv6 and a peer dials it from
-- an address not known here), at most what the network tool rendered
-- for the paths of all its peers (cfg.mtu), at least 1280.
function desired.mtu(cfg, uplink)
  local family, unknown = 4, #cfg.peers == 0
  for _, p in ipairs(cfg.peers) do
    if not p.endpoint then
      unknown = true
    elseif p.endpoint:sub(1, 1) == "[" then
      family = 6
    end
  end
  if unknown and uplink.ipv6 then family = 6 end
  local m = uplink.mtu - OVERHEAD[family]
  if cfg.mtu and cfg.mtu < m then m = cfg.mtu end
  return math.max(m, MIN_MTU)
end

-- Is this NR an entry point of its network's routed prefix: one of the
-- exit candidates (the provider routes the prefix to the exit in use;
-- every candidate is ready for it), or the rendered exit.
function desired.entry(cfg)
  if not cfg.routed_ipv6 then return false end
  local f = cfg.failover
  if f and f.exits then
    for _, e in ipairs(f.exits) do if e == cfg.node_id then return true end end
    return false
  end
  return cfg.exit_for_network == true
end

-- The firewall policy's ctx for the NR (policies/firewall.lua, hook nr).
function desired.firewall_ctx(cfg)
  local c = { uplink = names.UPLINK, range = cfg.ip_range, range6 = cfg.ipv6_range,
    wg = names.wg_if(cfg.net_id), bridge = names.bridge_if(cfg.net_id) }
  if cfg.routed_ipv6 then
    c.routed, c.routed_subnet = cfg.routed_ipv6, cfg.routed_ipv6_subnet
    c.entry = desired.entry(cfg) or nil
    c.expose = cfg.expose
  end
  return c
end

-- The gateway (::1) of a /64 given as text, as "addr/64".
local function gateway64(subnet)
  return ip.format_addr(ip.host(ip.parse_cidr(subnet), 1)) .. "/64"
end

-- CFG: a validated NR config. CTX: {uplink_addr = "100.127.x.y/16",
-- private_key (opened, core.key object), public_key, backend, log,
-- firewall (the policy's ruleset for desired.firewall_ctx(cfg), or nil),
-- uplink (zmesh.nr.uplink.node_link)}.
function desired.nr(cfg, ctx)
  local id = cfg.net_id
  local ns, ndmz = names.nr_ns(id), names.NDMZ
  local wg, br = names.wg_if(id), names.bridge_if(id)
  local subnet = ip.parse_cidr(cfg.subnet)
  local gateway = ip.format_addr(ip.host(subnet, 1))
  local mtu = desired.mtu(cfg, ctx.uplink)
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
      backend = ctx.backend, log = ctx.log, mtu = mtu, up = true },
    { kind = "addr", ns = ns, dev = wg, addr = cfg.mesh_address },
    { kind = "wg", ns = ns, name = wg, private_key = ctx.private_key,
      public_key = ctx.public_key, listen_port = cfg.listen_port, peers = cfg.peers },
    -- The user network's range goes into the tunnel; wg picks the peer.
    { kind = "route", ns = ns, family = 4, dst = cfg.ip_range, dev = wg },
    -- Containers.
    { kind = "link", ns = ns, name = br, type = "bridge", mtu = mtu, up = true },
    { kind = "addr", ns = ns, dev = br, addr = gateway .. "/24" },
  }
  local has6 = cfg.ipv6_subnet or cfg.routed_ipv6_subnet
  if has6 then
    -- IPv6 towards the ndmz, at an address the net id gives.
    d[#d + 1] = { kind = "addr", ns = ns, dev = names.UPLINK, addr = names.nr_uplink6(id) .. "/64" }
  end
  if cfg.ipv6_subnet then
    -- IPv6 inside the mesh: the NR's /64 on its bridge, the network's
    -- prefix into the tunnel.
    d[#d + 1] = { kind = "addr", ns = ns, dev = br, addr = gateway64(cfg.ipv6_subnet) }
    if cfg.ipv6_range then
      d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = cfg.ipv6_range, dev = wg }
    end
  end
  if cfg.routed_ipv6_subnet then
    -- The routed prefix: this NR's /64 on its bridge, the others' through
    -- the tunnel (each peer carries the /64s it leads to).
    d[#d + 1] = { kind = "addr", ns = ns, dev = br, addr = gateway64(cfg.routed_ipv6_subnet) }
    d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = cfg.routed_ipv6, dev = wg }
    if desired.entry(cfg) then
      -- The entry point: the ndmz routes the prefix into this NR.
      d[#d + 1] = { kind = "route", ns = ndmz, family = 6, dst = cfg.routed_ipv6,
        via = names.nr_uplink6(id), dev = names.TONRS }
    else
      -- No longer one (the exit moved): not into this NR any more.
      d[#d + 1] = { kind = "route", ns = ndmz, family = 6, dst = cfg.routed_ipv6,
        via = names.nr_uplink6(id), absent = true }
    end
  end
  if cfg.exit == "mesh" then
    -- Sole exit elsewhere: everything leaves through the tunnel.
    d[#d + 1] = { kind = "route", ns = ns, family = 4, dst = "default", dev = wg }
    if has6 then d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = "default", dev = wg } end
  else
    d[#d + 1] = { kind = "route", ns = ns, family = 4, dst = "default", via = names.TONRS_GATEWAY,
      dev = names.UPLINK }
    if has6 then
      d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = "default", via = names.TONRS_GATEWAY6,
        dev = names.UPLINK }
    end
  end
  if ctx.firewall then
    d[#d + 1] = { kind = "nft", ns = ns, ruleset = ctx.firewall }
  end
  return d
end

-- The routes the ndmz has for NRs (desired state of the ndmz, see
-- zmesh.node.ndmz): for each NR config of CONFIGS (validated) that is an
-- entry point of a routed prefix, the prefix into that NR. One prefix
-- goes to one NR: a second NR with the same prefix (another network's
-- mistake) is left out, the first by net id kept.
function desired.ndmz_routes(configs)
  local ids = {}
  for id in pairs(configs) do ids[#ids + 1] = id end
  table.sort(ids)
  local out, taken = {}, {}
  for _, id in ipairs(ids) do
    local cfg = configs[id]
    if cfg.routed_ipv6 and desired.entry(cfg) and not taken[cfg.routed_ipv6] then
      taken[cfg.routed_ipv6] = id
      out[#out + 1] = { kind = "route", ns = names.NDMZ, family = 6, dst = cfg.routed_ipv6,
        via = names.nr_uplink6(cfg.net_id), dev = names.TONRS }
    end
  end
  return out
end

-- What the NR apply owns exclusively (pruned when not desired).
function desired.nr_owned_routes(cfg) return { names.nr_ns(cfg.net_id) } end

-- The container's address in the NR's routed /64: the low 64 bits of its
-- unique-local address when it has one, else ::N for IPv4 address
-- a.b.c.N, N's decimal digits read as hex (10.1.4.10 → …:4::10, as the
-- unique-local addresses are usually written). Nil without a routed /64.
function desired.routed_address(cfg, c)
  if not cfg.routed_ipv6_subnet then return nil end
  local bytes = {}
  local sub = ip.parse_cidr(cfg.routed_ipv6_subnet)
  for i = 1, 8 do bytes[i] = sub.bytes[i] end
  if c.ip6 then
    local a = ip.parse_addr(c.ip6)
    for i = 9, 16 do bytes[i] = a.bytes[i] end
  else
    local n = tonumber(tostring(ip.parse_addr(c.ip).bytes[4]), 16)
    for i = 9, 14 do bytes[i] = 0 end
    bytes[15], bytes[16] = (n >> 8) & 0xff, n & 0xff
  end
  return ip.format_addr({ family = 6, bytes = bytes })
end

-- A container attached to an NR: its eth0 with an address in the subnet
-- (and in the NR's /64 when given, and in its routed /64), the NR's MTU.
-- CFG: the validated NR config; C: {netns, ip, ip6, port (the NR end's
-- name, allocated by the caller), uplink (zmesh.nr.uplink.node_link)}.
function desired.container(cfg, c)
  local id = cfg.net_id
  local ns = names.nr_ns(id)
  local subnet = ip.parse_cidr(cfg.subnet)
  local mtu = desired.mtu(cfg, c.uplink)
  local d = {
    { kind = "sysctl", ns = c.netns, key = "net.ipv6.conf.default.accept_dad", value = 0 },
    { kind = "link", ns = c.netns, name = "lo", type = "existing", up = true },
    { kind = "link", ns = ns, name = c.port, type = "veth",
      peer = names.CONTAINER_IF, peer_ns = c.netns, master = names.bridge_if(id), mtu = mtu, up = true },
    { kind = "link", ns = c.netns, name = names.CONTAINER_IF, type = "veth_end", mtu = mtu, up = true },
    { kind = "addr", ns = c.netns, dev = names.CONTAINER_IF, addr = c.ip .. "/" .. subnet.len },
    { kind = "route", ns = c.netns, family = 4, dst = "default",
      via = ip.format_addr(ip.host(subnet, 1)),
      dev = names.CONTAINER_IF },
  }
  local routed = desired.routed_address(cfg, c)
  if routed then
    d[#d + 1] = { kind = "addr", ns = c.netns, dev = names.CONTAINER_IF, addr = routed .. "/64" }
  end
  if c.ip6 then
    local v6 = ip.parse_cidr(cfg.ipv6_subnet)
    d[#d + 1] = { kind = "addr", ns = c.netns, dev = names.CONTAINER_IF, addr = c.ip6 .. "/64" }
    d[#d + 1] = { kind = "route", ns = c.netns, family = 6, dst = "default",
      via = ip.format_addr(ip.host(v6, 1)), dev = names.CONTAINER_IF }
  elseif routed then
    d[#d + 1] = { kind = "route", ns = c.netns, family = 6, dst = "default",
      via = ip.format_addr(ip.host(ip.parse_cidr(cfg.routed_ipv6_subnet), 1)), dev = names.CONTAINER_IF }
  end
  return d
end

return desired
