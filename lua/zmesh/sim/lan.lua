-- More of the simulated world (zmesh.sim), for IPv6, DHCP and MTU:
--
--   lan.internet6(S)                IPv6 forwarding on the Internet
--   lan.host6(S, tag, addr4, addr6) a host on the Internet with IPv6 too
--   lan.route6(S, prefix, via)      a route on the Internet (a provider's,
--                                   towards a network's exit node)
--   lan.segment(S, tag, spec)       a public segment: a router on the
--                                   Internet with its own LAN (documentation
--                                   space), routed, no NAT; nodes join it
--                                   with S:node{id =, behind = tag}
--   lan.lan6(S, router, addr6)      IPv6 on a router's LAN (for RA)
--   lan.dnsmasq(S, router, spec)    DHCP (and RA) on a router's LAN
--   lan.dynamic(S, id, spec)        node ID's uplink by DHCP and/or RA
--   lan.v6only(S, id, addr6)        node ID's uplink: IPv6 only
--   lan.mtu(S, id, mtu)             node ID's NIC and its far end at MTU
--
-- Everything lives in the run's namespaces and under its state root, so
-- S:destroy() removes it (dnsmasq included: it runs in a router's
-- namespace).
local core = require "zmesh.core"
local json = require "zmesh.json"
local sim = require "zmesh.sim"

local lan = {}

local q, sh = sim.q, sim.sh

local INET_GW, INET_GW6 = "203.0.113.254", "2001:db8::fffe"

local function must(ok, err)
  if not ok then error(err, 2) end
  return ok
end

function lan.internet6(S)
  must(core.sysctl.set(S.inet, "net.ipv6.conf.all.forwarding", 1))
end

-- A host on the Internet with ADDR4 ("203.0.113.200/24") and ADDR6
-- ("2001:db8::200/64").
function lan.host6(S, tag, addr4, addr6)
  local ns = S:host(tag, addr4)
  must(core.addr.add { ns = ns, dev = "eth0", addr = addr6, nodad = true })
  must(core.route.add { ns = ns, family = 6, dst = "default", via = INET_GW6 })
  return ns
end

-- The Internet's route for PREFIX via VIA (replaced when there is one):
-- what a provider does for a customer's routed prefix.
function lan.route6(S, prefix, via)
  must(core.route.add { ns = S.inet, family = 6, dst = prefix, via = via, replace = true })
end

-- A public segment: router TAG on the Internet (spec.wan = "203.0.113.105/24",
-- spec.wan6 = "2001:db8::105/64") with a LAN bridge (spec.lan = "198.51.100.1/24",
-- spec.lan6 = "2001:db8:5::1/64"), routing both ways without NAT or filter.
-- It takes the place of a NAT router in S.routers, so that
-- S:node{behind = TAG} plugs nodes into its LAN.
function lan.segment(S, tag, spec)
  local ns = S:make_ns(tag)
  must(core.link.set { ns = ns, name = "lo", up = true })
  S:plug(tag, ns, "wan")
  must(core.addr.add { ns = ns, dev = "wan", addr = spec.wan })
  must(core.addr.add { ns = ns, dev = "wan", addr = spec.wan6, nodad = true })
  must(core.route.add { ns = ns, family = 4, dst = "default", via = INET_GW })
  must(core.route.add { ns = ns, family = 6, dst = "default", via = INET_GW6 })
  must(core.link.bridge { ns = ns, name = "lan" })
  must(core.link.set { ns = ns, name = "lan", up = true })
  must(core.addr.add { ns = ns, dev = "lan", addr = spec.lan })
  must(core.addr.add { ns = ns, dev = "lan", addr = spec.lan6, nodad = true })
  must(core.sysctl.set(ns, "net.ipv4.ip_forward", 1))
  must(core.sysctl.set(ns, "net.ipv6.conf.all.forwarding", 1))
  local ip = require "zmesh.ip"
  local p4, p6 = ip.parse_cidr(spec.lan), ip.parse_cidr(spec.lan6)
  must(core.route.add { ns = S.inet, family = 4, dst = ip.format_cidr(ip.network(p4)),
    via = spec.wan:match("^[^/]+") })
  lan.internet6(S)
  must(core.route.add { ns = S.inet, family = 6, dst = ip.format_cidr(ip.network(p6)),
    via = spec.wan6:match("^[^/]+") })
  local gateway = spec.lan:match("^[^/]+")
  local r = { tag = tag, ns = ns, lan_prefix = gateway:match("^(%d+%.%d+%.%d+%.)"), hosts = 10,
    gateway = gateway, wan = spec.wan, segment = true }
  S.routers[tag] = r
  return r
end

-- IPv6 ADDR6 on router R's LAN (a NAT router's, for RA on it).
function lan.lan6(_, r, addr6)
  must(core.addr.add { ns = r.ns, dev = "lan", addr = addr6, nodad = true })
  must(core.sysctl.set(r.ns, "net.ipv6.conf.all.forwarding", 1))
end

local Dnsmasq = {}
Dnsmasq.__index = Dnsmasq

-- DHCP on router R's LAN, and RA: spec = { range = { "198.51.100.50",
-- "198.51.100.99" }, lease = "2m", router = gateway (default: R's),
-- mtu = 1400 (DHCP option and RA), prefix6 = "2001:db8:5::" (RA, SLAAC),
-- ra_interval = 10, hosts = { [client id text] = address } }. Returns a
-- handle: :start(), :stop(), :reconfigure(spec_changes), .pid.
function lan.dnsmasq(S, r, spec)
  local d = setmetatable({ S = S, r = r, spec = spec,
    leases = S:state_root() .. "/dnsmasq-" .. r.tag .. ".leases",
    log = S:state_root() .. "/dnsmasq-" .. r.tag .. ".log",
    pidfile = S:state_root() .. "/dnsmasq-" .. r.tag .. ".pid" }, Dnsmasq)
  d:start()
  return d
end

-- A client id as dnsmasq's dhcp-host matches it: type 0, then the text.
local function client_hex(text)
  local parts = { "00" }
  for i = 1, #text do parts[#parts + 1] = string.format("%02x", text:byte(i)) end
  return table.concat(parts, ":")
end

function Dnsmasq:args()
  local s, r = self.spec, self.r
  local args = { "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--interface=lan",
    "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp",
    "--dhcp-leasefile=" .. self.leases, "--pid-file=" .. self.pidfile,
    string.format("--dhcp-range=%s,%s,%s", s.range[1], s.range[2], s.lease or "2m"),
    "--dhcp-option=option:router," .. (s.router or r.gateway) }
  if s.mtu then args[#args + 1] = "--dhcp-option=option:mtu," .. s.mtu end
  for id, addr in pairs(s.hosts or {}) do
    args[#args + 1] = string.format("--dhcp-host=id:%s,%s", client_hex(id), addr)
  end
  if s.prefix6 then
    args[#args + 1] = string.format("--dhcp-range=%s,ra-only,64,%s", s.prefix6, s.lease or "2m")
    args[#args + 1] = "--enable-ra"
    local life = s.router_lifetime or 120
    args[#args + 1] = string.format("--ra-param=lan,%s%d,%d", s.mtu and ("mtu:" .. s.mtu .. ",") or "",
      s.ra_interval or 10, life)
  end
  return args
end

function Dnsmasq:start()
  if self.pid then return end
  local words = {}
  for i, a in ipairs(self:args()) do words[i] = q(a) end
  local out = sh(string.format("ip netns exec %s dnsmasq %s >> %s 2>&1 & echo $!", self.r.ns,
    table.concat(words, " "), q(self.log)))
  self.pid = tonumber(out)
  if not self.pid then error("dnsmasq on " .. self.r.tag .. ": " .. out, 0) end
  -- Up once it listens on the DHCP port.
  for _ = 1, 100 do
    local ports = sh("ip netns exec " .. self.r.ns .. " ss -lun 'sport = :67'")
    if ports:find(":67", 1, true) then return end
    sh("sleep 0.05")
  end
  error("dnsmasq on " .. self.r.tag .. " did not come up: " .. (sh("tail -5 " .. q(self.log))), 0)
end

function Dnsmasq:stop()
  if not self.pid then return end
  sh("kill " .. self.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not core.fs.stat("/proc/" .. self.pid .. "/exe") then break end
    sh("sleep 0.02")
  end
  self.pid = nil
end

-- Start again with CHANGES applied to the spec (a new reservation …).
function Dnsmasq:reconfigure(changes)
  self:stop()
  for k, v in pairs(changes) do self.spec[k] = v end
  self:start()
end

-- Node ID's uplink by DHCP (spec.dhcp) and/or router advertisements
-- (spec.ra), without static addresses: its node config rewritten, before
-- it starts. spec.reconcile_interval too.
function lan.dynamic(S, id, spec)
  local node = S.nodes[id]
  local u = node.config.uplink
  node.config.uplink = { mode = u.mode, nic = u.nic, dhcp = spec.dhcp or nil, ra = spec.ra or nil }
  if spec.reconcile_interval then node.config.reconcile_interval = spec.reconcile_interval end
  S:write_config(id)
end

-- Node ID's uplink with IPv6 only: ADDR6 ("2001:db8::21/64") via the
-- Internet's IPv6 router, no IPv4 at all.
function lan.v6only(S, id, addr6)
  local node = S.nodes[id]
  local u = node.config.uplink
  node.config.uplink = { mode = u.mode, nic = u.nic, addresses = json.array({ addr6 }), gateway6 = INET_GW6 }
  S:write_config(id)
end

-- Node ID's NIC at MTU, and its far end (its port on the Internet or on
-- its router's LAN): a PPPoE-like path. Before node.start, so that the
-- ndmz's macvlan takes it.
function lan.mtu(S, id, mtu)
  local node = assert(S.nodes[id], "unknown node " .. tostring(id))
  local ns, port = S.inet, "i-" .. id
  if node.hidden then
    for _, r in pairs(S.routers) do
      if core.link.get(r.ns, "l-" .. id) then ns, port = r.ns, "l-" .. id end
    end
  end
  must(core.link.set { ns = ns, name = port, mtu = mtu })
  must(core.link.set { ns = node.host, name = "eth0", mtu = mtu })
end

return lan
