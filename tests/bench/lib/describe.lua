-- What a node's namespaces hold, as one normalised JSON document, so that
-- two builds of the same NR (by Zero-Mesh and by hand, see
-- tests/bench/nr_whole.lua) can be compared byte for byte:
--
--   zmesh run tests/bench/lib/describe.lua NS…
--
-- Per namespace: links (name, kind, up, mtu, master), global and
-- link-scope-free addresses, routes, the sysctls Zero-Mesh sets, the
-- WireGuard device (listen port, public key, peers) and the nftables table
-- inet zmesh (normalised as core.nft.dump gives it, handles and counters
-- left out). Indexes, MAC addresses and link-local addresses differ
-- between any two builds and are left out, as is a userspace WireGuard's
-- placeholder.
local core = require "zmesh.core"
local json = require "zmesh.json"

local SYSCTLS = { "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.accept_dad",
  "net.ipv4.conf.all.send_redirects" }

local function sorted(list, key)
  table.sort(list, function(a, b) return key(a) < key(b) end)
  return json.array(list)
end

-- A userspace WireGuard's placeholder (core/wg_tun.c): a TUN, down, in
-- the daemon's namespace, named as its interface in another one. A daemon
-- started by hand makes its own TUN and moves it, and has none.
local function placeholder(l, ns, namespaces)
  if l.kind ~= "tun" or l.up then return false end
  for _, other in ipairs(namespaces) do
    local t = other ~= ns and core.link.get(other, l.name)
    if t and t.kind == "tun" then return true end
  end
  return false
end

local function describe(ns, namespaces)
  local d = { links = {}, addrs = {}, routes = {}, sysctl = {} }
  local by_index = {}
  local links = {}
  for _, l in ipairs(assert(core.link.dump(ns))) do
    if not placeholder(l, ns, namespaces) then links[#links + 1] = l end
  end
  for _, l in ipairs(links) do by_index[l.index] = l.name end
  for _, l in ipairs(links) do
    d.links[#d.links + 1] = { name = l.name, kind = l.kind or "-", up = l.up, mtu = l.mtu,
      master = l.master or (l.master_index and by_index[l.master_index]) or "-" }
  end
  d.links = sorted(d.links, function(l) return l.name end)
  for _, a in ipairs(assert(core.addr.dump(ns))) do
    if a.scope ~= "link" then d.addrs[#d.addrs + 1] = a.dev .. " " .. a.addr end
  end
  table.sort(d.addrs)
  d.addrs = json.array(d.addrs)
  for _, r in ipairs(assert(core.route.dump(ns))) do
    if not (r.family == 6 and tostring(r.dst):match("^fe80")) then
      d.routes[#d.routes + 1] = string.format("%d %s via %s dev %s proto %s", r.family, tostring(r.dst),
        tostring(r.via), tostring(r.dev), tostring(r.protocol))
    end
  end
  table.sort(d.routes)
  d.routes = json.array(d.routes)
  for _, k in ipairs(SYSCTLS) do d.sysctl[k] = core.sysctl.get(ns, k) or "-" end
  for _, l in ipairs(links) do
    if l.kind == "tun" or l.kind == "wireguard" then
      local dev = core.wg.get { ns = ns, name = l.name }
      if dev then
        local peers = {}
        for _, p in ipairs(dev.peers) do
          local ips = table.move(p.allowed_ips, 1, #p.allowed_ips, 1, {})
          table.sort(ips)
          peers[#peers + 1] = { public_key = p.public_key, endpoint = p.endpoint or "-",
            keepalive = p.persistent_keepalive or 0, allowed_ips = json.array(ips) }
        end
        d.wireguard = { name = l.name, listen_port = dev.listen_port, public_key = dev.public_key,
          peers = sorted(peers, function(p) return p.public_key end) }
      end
    end
  end
  local t = core.nft.dump(ns, { family = "inet", table = "zmesh" })
  if t then
    t.live = nil
    d.nft = t
  end
  return d
end

local out = {}
local namespaces = { ... }
for _, ns in ipairs(namespaces) do out[ns] = describe(ns, namespaces) end
print(json.encode(out, { pretty = true }))
