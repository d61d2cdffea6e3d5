-- The node side of IPv6, DHCP and MTU, without a kernel: NR configs with
-- a routed prefix, the NR's and the ndmz's desired state, the uplink
-- learnt from leases and router advertisements, the node config.
local config = require "zmesh.node.config"
local desired = require "zmesh.nr.desired"
local dhcp = require "zmesh.daemon.dhcp"
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"
local ndmz = require "zmesh.node.ndmz"
local nr_config = require "zmesh.nr.config"

local KEY_B = string.rep("B", 42) .. "A="

local function base(over)
  local c = {
    net_id = "abc", node_id = "n1", ip_range = "10.1.0.0/16", subnet = "10.1.1.0/24",
    ipv6_range = "fd00:1::/48", ipv6_subnet = "fd00:1:0:1::/64",
    routed_ipv6 = "2001:db8:100::/48", routed_ipv6_subnet = "2001:db8:100:1::/64",
    wireguard_private_key = "c2VhbGVk", wireguard_listen_port = 51820,
    peers = { { node_id = "n2", wireguard_public_key = KEY_B,
      allowed_ips = { "10.1.2.0/24", "2001:db8:100:2::/64" }, endpoint = "[2001:db8::12]:51820" } },
  }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function fails(c, pattern)
  local ok, err = pcall(nr_config.validate, c)
  assert.is_false(ok, "expected a validation error")
  assert.matches(pattern, err, 1, true)
end

local function find(list, pred)
  for _, r in ipairs(list) do if pred(r) then return r end end
end

local tmpdir = require "tmpdir"

describe("an NR config with a routed prefix", function()
  it("is checked field by field", function()
    local c = nr_config.validate(base({ expose = { { address = "2001:db8:100:1::10", proto = "tcp", port = 80 } },
      mtu = 1320 }))
    assert.equal("2001:db8:100:1::/64", c.routed_ipv6_subnet)
    assert.equal(1320, c.mtu)
    fails(base({ routed_ipv6 = "fd00:9::/48" }), "routed_ipv6 'fd00:9::/48': must be a global unicast prefix")
    fails(base({ routed_ipv6_subnet = "2001:db8:101:1::/64" }),
      "routed_ipv6_subnet '2001:db8:101:1::/64': is not inside routed_ipv6 2001:db8:100::/48")
    local c1 = base()
    c1.routed_ipv6_subnet = nil
    fails(c1, "routed_ipv6_subnet: missing")
    local c2 = base()
    c2.routed_ipv6 = nil
    fails(c2, "routed_ipv6_subnet '2001:db8:100:1::/64': is set but routed_ipv6 is not")
    fails(base({ expose = { { address = "2001:db8:200::10", proto = "tcp", port = 80 } } }),
      "expose[1].address '2001:db8:200::10': is not inside routed_ipv6")
    fails(base({ expose = { { address = "2001:db8:100:1::10", proto = "icmp", port = 80 } } }),
      "expose[1].proto")
    fails(base({ expose = { { address = "2001:db8:100:1::10", proto = "tcp", port = 0 } } }), "expose[1].port")
    fails(base({ mtu = 1000 }), "mtu 1000")
    -- Its own /64 on a peer is refused; the whole prefix (a primary's) is not.
    fails(base({ peers = { { wireguard_public_key = KEY_B, allowed_ips = { "2001:db8:100:1::/64" } } } }),
      "overlaps this NR's own routed IPv6 subnet")
    nr_config.validate(base({ peers = { { wireguard_public_key = KEY_B, allowed_ips = { "2001:db8:100::/48" } } } }))
    -- The NRs' uplink range is Zero-Mesh's.
    fails(base({ ipv6_range = "fd7a:6d65:7368::/48", ipv6_subnet = "fd7a:6d65:7368:1::/64" }),
      "ipv6_range 'fd7a:6d65:7368::/48': overlaps fd7a:6d65:7368::/64")
  end)

  it("gives the NR an IPv6 uplink, the prefix into the tunnel and, as an entry point, the ndmz's route", function()
    local cfg = nr_config.validate(base({ exit_for_network = true }))
    local d = desired.nr(cfg, { uplink_addr = "100.127.0.2/16", uplink = { mtu = 1500, ipv6 = true },
      firewall = { family = "inet" }, firewall_complete = true })
    local up6 = names.nr_uplink6("abc") .. "/64"
    assert.truthy(find(d, function(r) return r.kind == "addr" and r.dev == "public" and r.addr == up6 end))
    assert.truthy(find(d, function(r) return r.kind == "addr" and r.dev == "b-abc" and r.addr == "2001:db8:100:1::1/64" end))
    assert.truthy(find(d, function(r)
      return r.kind == "route" and r.ns == "n-abc" and r.dst == "2001:db8:100::/48" and r.dev == "w-abc"
    end))
    assert.truthy(find(d, function(r)
      return r.kind == "route" and r.ns == "ndmz" and r.dst == "2001:db8:100::/48"
        and r.via == names.nr_uplink6("abc") and r.dev == "tonrs"
    end))
    -- Local exit: IPv6 leaves through the ndmz, like IPv4.
    assert.truthy(find(d, function(r)
      return r.kind == "route" and r.family == 6 and r.dst == "default" and r.via == names.TONRS_GATEWAY6
    end))
    -- Not an entry point: no ndmz route into it (one left from when it was
    -- is to go).
    local other = desired.nr(nr_config.validate(base({ exit = "mesh", peers = { { node_id = "n2",
      wireguard_public_key = KEY_B, allowed_ips = { "0.0.0.0/0", "::/0" }, endpoint = "203.0.113.12:51820" } } })),
      { uplink_addr = "100.127.0.2/16", uplink = { mtu = 1500, ipv6 = true } })
    assert.is_nil(find(other, function(r) return r.kind == "route" and r.ns == "ndmz" and not r.absent end))
    assert.truthy(find(other, function(r)
      return r.kind == "route" and r.ns == "ndmz" and r.absent and r.via == names.nr_uplink6("abc")
    end))
    assert.truthy(find(other, function(r) return r.kind == "route" and r.family == 6 and r.dst == "default"
      and r.dev == "w-abc" end))
  end)

  it("routes the prefix into the first NR that is its entry point, from the stored configs", function()
    local a = nr_config.validate(base({ net_id = "aaa", failover = { role = "public", exits = { "n1" },
      nodes = { n2 = { mesh = "100.64.1.2", owned = { "10.1.2.0/24" } } } } }))
    local b = nr_config.validate(base({ net_id = "bbb", exit_for_network = true }))
    local c = nr_config.validate(base({ net_id = "ccc", routed_ipv6 = "2001:db8:300::/48",
      routed_ipv6_subnet = "2001:db8:300:1::/64", failover = { role = "public", exits = { "n2" },
        nodes = { n2 = { mesh = "100.64.1.2", owned = { "10.1.2.0/24" } } } } }))
    local routes = desired.ndmz_routes({ aaa = a, bbb = b, ccc = c })
    assert.equal(1, #routes)
    assert.equal(names.nr_uplink6("aaa"), routes[1].via)
  end)

  it("gives containers an address in the routed /64 from their own", function()
    local cfg = nr_config.validate(base())
    assert.equal("2001:db8:100:1::10", desired.routed_address(cfg, { ip = "10.1.1.10", ip6 = "fd00:1:0:1::10" }))
    assert.equal("2001:db8:100:1::abcd", desired.routed_address(cfg, { ip = "10.1.1.10", ip6 = "fd00:1:0:1::abcd" }))
    local raw = base()
    raw.ipv6_range, raw.ipv6_subnet = nil, nil
    local v4only = nr_config.validate(raw)
    assert.equal("2001:db8:100:1::254", desired.routed_address(v4only, { ip = "10.1.1.254" }))
    local d = desired.container(v4only, { netns = "c1", ip = "10.1.1.10", port = "c-1", uplink = { mtu = 1500 } })
    assert.truthy(find(d, function(r) return r.kind == "addr" and r.addr == "2001:db8:100:1::10/64" end))
    assert.truthy(find(d, function(r)
      return r.kind == "route" and r.family == 6 and r.via == "2001:db8:100:1::1"
    end))
  end)
end)

describe("the NR's MTU", function()
  local function cfg(peers, mtu)
    return { peers = peers, mtu = mtu }
  end

  it("is the uplink's less WireGuard's overhead for the families its peers use, at most the rendered one", function()
    local v4 = { endpoint = "203.0.113.1:51820" }
    local v6 = { endpoint = "[2001:db8::1]:51820" }
    local served = {}
    assert.equal(1440, desired.mtu(cfg({ v4 }), { mtu = 1500, ipv6 = true }))
    assert.equal(1420, desired.mtu(cfg({ v4, v6 }), { mtu = 1500 }))
    assert.equal(1440, desired.mtu(cfg({ served }), { mtu = 1500, ipv6 = false }))
    assert.equal(1420, desired.mtu(cfg({ served }), { mtu = 1500, ipv6 = true }))
    assert.equal(1340, desired.mtu(cfg({ v4 }), { mtu = 1400 }))
    assert.equal(1320, desired.mtu(cfg({ v4 }, 1320), { mtu = 1500 }))
    assert.equal(1340, desired.mtu(cfg({ v4 }, 1400), { mtu = 1400 }))
    assert.equal(1280, desired.mtu(cfg({ v6 }), { mtu = 1300 }))
  end)

  it("is set on the WireGuard link, the bridge and the containers' links", function()
    local c = nr_config.validate(base({ mtu = 1320 }))
    local up = { mtu = 1500, ipv6 = true }
    local d = desired.nr(c, { uplink_addr = "100.127.0.2/16", uplink = up })
    assert.equal(1320, find(d, function(r) return r.kind == "link" and r.name == "w-abc" end).mtu)
    assert.equal(1320, find(d, function(r) return r.kind == "link" and r.name == "b-abc" end).mtu)
    local dc = desired.container(c, { netns = "c1", ip = "10.1.1.10", port = "c-1", uplink = up })
    assert.equal(1320, find(dc, function(r) return r.kind == "link" and r.name == "c-1" end).mtu)
    assert.equal(1320, find(dc, function(r) return r.kind == "link" and r.name == "eth0" end).mtu)
  end)
end)

describe("names.nr_uplink6", function()
  it("gives every net id its own address in the NRs' uplink range, never ::0 or ::1", function()
    local range = ip.parse_cidr(names.NR_UPLINK6_RANGE)
    local seen = {}
    for _, id in ipairs({ "a", "b", "aa", "a0", "0a", "9", "99", "zzzzzzzzzzzz", "999999999999", "demo1" }) do
      local text = names.nr_uplink6(id)
      local a = ip.parse_addr(text)
      assert.is_true(ip.contains(range, a), text)
      assert.is_nil(seen[text], id .. " and " .. tostring(seen[text]))
      assert.not_equal(names.TONRS_GATEWAY6, text)
      seen[text] = id
    end
  end)
end)

describe("the ndmz's uplink, learnt", function()
  local dir, cfg

  before_each(function()
    dir = tmpdir()
    os.execute("mkdir -p " .. dir .. "/dhcp")
    cfg = config.validate({ node_id = "n7", uplink = { nic = "eth0", dhcp = true, ra = true },
      run_dir = dir, state_dir = dir .. "/state" })
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function write(name, text)
    local f = assert(io.open(dir .. "/dhcp/" .. name, "w"))
    f:write(text)
    f:close()
  end

  it("takes a DHCP lease while it lasts, and nothing from one that does not parse", function()
    write("lease4", "event=bound\nip=198.51.100.50\nmask=24\nrouter=198.51.100.1 198.51.100.2\nlease=120\n"
      .. "mtu=1400\nserverid=198.51.100.1\nat=1000\n")
    local l = assert(ndmz.lease4(cfg, 1100))
    assert.equal("198.51.100.50/24", l.address)
    assert.equal("198.51.100.1", l.router)
    assert.equal(1400, l.mtu)
    local none, why, old = ndmz.lease4(cfg, 1120)
    assert.is_nil(none)
    assert.equal("lease expired", why)
    assert.equal("198.51.100.50/24", old.address)
    write("lease4", "event=bound\nip=198.51.100.500\nmask=24\nlease=120\nat=1000\n")
    assert.is_nil((ndmz.lease4(cfg, 1001)))
    write("lease4", "event=lost\nip=198.51.100.50\nmask=24\nat=1000\n")
    local _, why2, lost = ndmz.lease4(cfg, 1001)
    assert.equal("no lease (lost)", why2)
    assert.equal("198.51.100.50/24", lost.address)
  end)

  it("takes what a router advertised, with a stable address per node and prefix", function()
    write("ra6.json", '{"at":1000,"router":"fe80::1","router_lifetime":600,"mtu":1400,'
      .. '"prefixes":[{"prefix":"2001:db8:5::/64","valid":120,"preferred":120,"autonomous":true},'
      .. '{"prefix":"2001:db8:6::/64","valid":120,"autonomous":false}]}')
    local ra = assert(ndmz.ra6(cfg, 1050))
    assert.equal("fe80::1", ra.router)
    assert.same({ ndmz.slaac_address("n7", "2001:db8:5::/64") }, ra.addresses)
    assert.not_equal(ndmz.slaac_address("n7", "2001:db8:5::/64"), ndmz.slaac_address("n8", "2001:db8:5::/64"))
    assert.equal(ndmz.slaac_address("n7", "2001:db8:5::/64"), ndmz.slaac_address("n7", "2001:db8:5::/64"))
    -- Past the prefix's valid lifetime, the router alone stays.
    local later = ndmz.ra6(cfg, 1200)
    assert.same({}, later.addresses)
    assert.equal("fe80::1", later.router)
  end)

  it("becomes the ndmz's desired state: addresses, default routes and MTU", function()
    write("lease4", "event=renew\nip=198.51.100.50\nmask=24\nrouter=198.51.100.1\nlease=120\nmtu=1400\nat="
      .. os.time() .. "\n")
    write("ra6.json", '{"at":' .. os.time() .. ',"router":"fe80::1","router_lifetime":600,"mtu":1450,'
      .. '"prefixes":[{"prefix":"2001:db8:5::/64","valid":120,"preferred":120,"autonomous":true}]}')
    local d = ndmz.desired(cfg)
    local addrs = {}
    for _, r in ipairs(d) do if r.kind == "addr" and r.dev == "public" then addrs[#addrs + 1] = r.addr end end
    assert.same({ "198.51.100.50/24", ndmz.slaac_address("n7", "2001:db8:5::/64") }, addrs)
    assert.truthy(find(d, function(r) return r.kind == "route" and r.family == 4 and r.via == "198.51.100.1" end))
    assert.truthy(find(d, function(r) return r.kind == "route" and r.family == 6 and r.via == "fe80::1" end))
    assert.equal(1400, find(d, function(r) return r.kind == "link" and r.name == "public" end).mtu)
    assert.truthy(find(d, function(r) return r.kind == "addr" and r.addr == names.TONRS_ADDR6 end))
    -- Nothing learnt yet: no address, no route, and still a valid ndmz.
    os.remove(dir .. "/dhcp/lease4")
    os.remove(dir .. "/dhcp/ra6.json")
    d = ndmz.desired(cfg)
    assert.is_nil(find(d, function(r) return r.kind == "addr" and r.dev == "public" end))
    assert.is_nil(find(d, function(r) return r.kind == "route" and r.dst == "default" end))
  end)
end)

describe("the node config's uplink", function()
  local function uplink(u) return config.validate({ node_id = "n1", uplink = u }).uplink end

  it("may have no static address with DHCP or RA, and an MTU", function()
    local u = uplink({ nic = "eth0", dhcp = true })
    assert.is_true(u.dhcp)
    assert.same({}, u.addresses)
    assert.equal(1400, uplink({ nic = "eth0", ra = true, mtu = 1400 }).mtu)
    local ok, err = pcall(uplink, { nic = "eth0" })
    assert.is_false(ok)
    assert.matches("uplink.addresses: missing", err, 1, true)
    ok, err = pcall(uplink, { nic = "eth0", dhcp = "yes" })
    assert.matches("uplink.dhcp", err, 1, true)
    ok, err = pcall(uplink, { nic = "eth0", dhcp = true, mtu = 100 })
    assert.matches("uplink.mtu", err, 1, true)
  end)
end)

describe("rdisc6's report", function()
  it("is read into router, lifetimes, MTU and prefixes", function()
    local ra = dhcp.parse_rdisc6([[
Soliciting ff02::2 (ff02::2) on public...

Hop limit                 :           64 (      0x40)
Router lifetime           :          600 (0x00000258) seconds
 Prefix                   : 2001:db8:5::/64
  On-link                 :          Yes
  Autonomous address conf.:          Yes
  Valid time              :     infinite (0xffffffff)
  Pref. time              :          120 (0x00000078) seconds
 MTU                      :         1400 bytes (valid)
 Source link-layer address: A6:BD:81:4B:1B:E9
 from fe80::a4bd:81ff:fe4b:1be9
]])
    assert.equal("fe80::a4bd:81ff:fe4b:1be9", ra.router)
    assert.equal(600, ra.router_lifetime)
    assert.equal(1400, ra.mtu)
    assert.same({ { prefix = "2001:db8:5::/64", autonomous = true, valid = 4294967295, preferred = 120 } },
      ra.prefixes)
    assert.is_nil(dhcp.parse_rdisc6("Soliciting ff02::2 (ff02::2) on public...\nTimed out.\n"))
  end)
end)
