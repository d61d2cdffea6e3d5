-- The ndmz: the node's uplink and the router towards every NR on the node,
-- in the carrier-grade NAT range (DESIGN §4).
--
-- Its uplink is configured statically (uplink.addresses, gateway,
-- gateway6), by DHCP (uplink.dhcp) and by router advertisements
-- (uplink.ra), or a mix. The clients never touch the kernel: what they
-- learn is written into run_dir/dhcp/ (lease4 by udhcpc's script, ra6.json
-- by the daemon from rdisc6, see zmesh.daemon.dhcp), and becomes the
-- ndmz's desired state here, applied by the same reconcile as everything
-- else. A lease past its time, or a prefix past its valid lifetime, is
-- no longer desired even when no client said so (a client that died).
--
-- Towards the NRs the ndmz has IPv4 (100.127.0.1/16) and IPv6
-- (names.TONRS_ADDR6) on its bridge, and routes each routed IPv6 prefix
-- whose entry point is an NR on this node into that NR.
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"

local ndmz = {}

local HOST = "host"

-- Where the uplink's clients leave what they learnt.
function ndmz.lease_dir(cfg) return cfg.run_dir .. "/dhcp" end
function ndmz.lease4_file(cfg) return ndmz.lease_dir(cfg) .. "/lease4" end
function ndmz.ra6_file(cfg) return ndmz.lease_dir(cfg) .. "/ra6.json" end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read(65536)
  f:close()
  return text
end

local function int(v, lo, hi)
  local n = math.tointeger(tonumber(v))
  if n and n >= lo and n <= hi then return n end
  return nil
end

-- The IPv4 lease udhcpc's script wrote (key=value lines: event, ip, mask,
-- router, lease, mtu, serverid, at), checked, or nil and why not. Values
-- that do not parse make the whole lease void: nothing of it is applied.
function ndmz.lease4(cfg, now)
  local text = read(ndmz.lease4_file(cfg))
  if not text then return nil, "no lease" end
  local kv = {}
  for k, v in text:gmatch("([%w_]+)=([^\n]*)") do kv[k] = v end
  local lease = { event = kv.event, at = int(kv.at, 0, 2 ^ 40), serverid = kv.serverid }
  local a = ip.parse_addr(kv.ip or "")
  local mask = int(kv.mask, 1, 32)
  if a and a.family == 4 and mask then lease.address = ip.format_addr(a) .. "/" .. mask end
  if lease.event ~= "bound" and lease.event ~= "renew" then
    return nil, "no lease (" .. tostring(kv.event) .. ")", lease
  end
  lease.seconds = int(kv.lease, 1, 2 ^ 32)
  if not lease.address or not lease.seconds or not lease.at then
    lease.address = nil
    return nil, "a lease that does not parse", lease
  end
  local router = ip.parse_addr((kv.router or ""):match("^%S*"))
  if router and router.family == 4 then lease.router = ip.format_addr(router) end
  lease.mtu = int(kv.mtu, 576, 65535)
  lease.expires = lease.at + lease.seconds
  if (now or os.time()) >= lease.expires then return nil, "lease expired", lease end
  return lease
end

-- 64 bits from S (FNV-1a), as 8 bytes.
local function hash64(s)
  local h = -3750763034362895579 -- 0xcbf29ce484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 1099511628211
  end
  local out = {}
  for i = 8, 1, -1 do
    out[i] = h & 0xff
    h = h >> 8
  end
  return out
end

-- The node's address in /64 PREFIX (text) learnt by RA: a stable
-- interface id from the node id and the prefix (as RFC 7217 does), so
-- that it stays across reboots and differs between nodes on one LAN.
function ndmz.slaac_address(node_id, prefix)
  local p = ip.parse_cidr(prefix)
  local iid = hash64(node_id .. "|" .. ip.format_cidr(p))
  local bytes = {}
  for i = 1, 8 do bytes[i] = p.bytes[i] end
  for i = 1, 8 do bytes[8 + i] = iid[i] end
  -- Never the subnet-router anycast address (::0).
  if bytes[16] == 0 and bytes[15] == 0 then bytes[16] = 1 end
  return ip.format_addr({ family = 6, bytes = bytes }) .. "/64"
end

-- What router advertisements said (ra6.json, written by the daemon from
-- rdisc6): { at, router, router_lifetime, mtu, prefixes = {{prefix,
-- valid, preferred, autonomous}} } with what is still valid, or nil and
-- why not.
function ndmz.ra6(cfg, now)
  local json = require "zmesh.json"
  local text = read(ndmz.ra6_file(cfg))
  if not text then return nil, "no router advertisement" end
  local ra = json.decode(text)
  if type(ra) ~= "table" or not int(ra.at, 0, 2 ^ 40) then return nil, "ra6.json does not parse" end
  now = now or os.time()
  local out = { at = ra.at, prefixes = {}, addresses = {} }
  local r = type(ra.router) == "string" and ip.parse_addr(ra.router)
  local life = int(ra.router_lifetime, 0, 2 ^ 32)
  if r and r.family == 6 and life and life > 0 and now < ra.at + life then
    out.router, out.router_expires = ip.format_addr(r), ra.at + life
  end
  out.mtu = int(ra.mtu, 1280, 65535)
  for _, p in ipairs(type(ra.prefixes) == "table" and ra.prefixes or {}) do
    local pp = type(p) == "table" and type(p.prefix) == "string" and ip.parse_cidr(p.prefix, { strict = true })
    local valid = type(p) == "table" and int(p.valid, 0, 2 ^ 32)
    if pp and pp.family == 6 and pp.len == 64 and p.autonomous == true and valid and now < ra.at + valid then
      local class = ip.classify(pp)
      if class ~= "link-local" and class ~= "multicast" then
        out.prefixes[#out.prefixes + 1] = { prefix = ip.format_cidr(pp), expires = ra.at + valid }
        out.addresses[#out.addresses + 1] = ndmz.slaac_address(cfg.node_id, ip.format_cidr(pp))
      end
    end
  end
  if #out.addresses == 0 and not out.router then return nil, "no valid prefix or router", out end
  return out
end

-- The uplink as configured and learnt: { addresses, gateway, gateway6,
-- mtu, lease4, ra6 }.
function ndmz.uplink(cfg, now)
  local u = cfg.uplink
  local out = { addresses = {}, gateway = u.gateway, gateway6 = u.gateway6, mtu = u.mtu }
  for i, a in ipairs(u.addresses) do out.addresses[i] = a end
  local mtus = {}
  if u.dhcp then
    local lease = ndmz.lease4(cfg, now)
    out.lease4 = lease
    if lease then
      out.addresses[#out.addresses + 1] = lease.address
      out.gateway = out.gateway or lease.router
      mtus[#mtus + 1] = lease.mtu
    end
  end
  if u.ra then
    local ra = ndmz.ra6(cfg, now)
    out.ra6 = ra
    if ra then
      for _, a in ipairs(ra.addresses) do out.addresses[#out.addresses + 1] = a end
      out.gateway6 = out.gateway6 or ra.router
      mtus[#mtus + 1] = ra.mtu
    end
  end
  if not out.mtu then
    for _, m in pairs(mtus) do out.mtu = out.mtu and math.min(out.mtu, m) or m end
  end
  return out
end

-- The routes into NRs that are entry points of a routed IPv6 prefix, from
-- the NR configs stored in state_dir (zmesh.nr.desired.ndmz_routes).
local function entry_routes(cfg)
  local store = require "zmesh.node.store"
  local nr_config = require "zmesh.nr.config"
  local configs = {}
  for id, raw in pairs(store.read_all(cfg.state_dir .. "/nrs", "nr", {})) do
    -- Only those with a routed prefix are worth validating (the converge
    -- checks every stored config anyway).
    if type(raw) == "table" and raw.routed_ipv6 ~= nil then
      local ok, c = pcall(nr_config.validate, raw)
      if ok then configs[id] = c end
    end
  end
  if next(configs) == nil then return {} end
  return require("zmesh.nr.desired").ndmz_routes(configs)
end

-- Desired resources for the ndmz from a validated node config.
-- opts.firewall: the ndmz's ruleset (from the firewall policy);
-- opts.now: the time leases are judged at (tests).
function ndmz.desired(cfg, opts)
  opts = opts or {}
  local ns, u = names.NDMZ, cfg.uplink
  local up = ndmz.uplink(cfg, opts.now)
  local d = {
    { kind = "netns", name = ns },
    { kind = "sysctl", ns = ns, key = "net.ipv4.ip_forward", value = 1 },
    { kind = "sysctl", ns = ns, key = "net.ipv6.conf.all.forwarding", value = 1 },
    { kind = "link", ns = ns, name = "lo", type = "existing", up = true },
    { kind = "link", ns = ns, name = names.TONRS, type = "bridge", up = true },
    { kind = "addr", ns = ns, dev = names.TONRS, addr = names.TONRS_ADDR },
    { kind = "addr", ns = ns, dev = names.TONRS, addr = names.TONRS_ADDR6 },
  }
  if u.mode == "macvlan" then
    -- Single NIC: the ndmz gets its own MAC on the node's NIC.
    d[#d + 1] = { kind = "link", ns = ns, name = names.UPLINK, type = "macvlan",
      parent = u.nic, parent_ns = HOST, mtu = up.mtu, up = true }
  else
    -- Dual NIC: the second NIC itself becomes the ndmz uplink.
    d[#d + 1] = { kind = "link", ns = ns, name = names.UPLINK, type = "moved",
      from = u.nic, from_ns = HOST, mtu = up.mtu, up = true }
  end
  for _, a in ipairs(up.addresses) do
    d[#d + 1] = { kind = "addr", ns = ns, dev = names.UPLINK, addr = a }
  end
  if up.gateway then
    d[#d + 1] = { kind = "route", ns = ns, family = 4, dst = "default", via = up.gateway,
      dev = names.UPLINK }
  end
  if up.gateway6 then
    d[#d + 1] = { kind = "route", ns = ns, family = 6, dst = "default", via = up.gateway6,
      dev = names.UPLINK }
  end
  for _, r in ipairs(entry_routes(cfg)) do d[#d + 1] = r end
  if opts.firewall then
    d[#d + 1] = { kind = "nft", ns = ns, ruleset = opts.firewall }
  end
  return d
end

return ndmz
