-- Addresses, routes and sysctls in namespaces, checked with `ip` and
-- /proc from inside the namespace.
local core = require "zmesh.core"
local json = require "zmesh.json"
local testns = require "testns"

local function ip_json(ns, what)
  local out, ok = testns.sh("ip -n " .. ns .. " -j " .. what)
  assert(ok, out)
  return json.decode(out)
end

describe("addr, route, sysctl", function()
  local A, B
  before_each(function()
    A, B = testns.name("ra"), testns.name("rb")
    assert(core.netns.create(A))
    assert(core.netns.create(B))
    assert(core.link.veth { ns = A, name = "va", peer = "vb", peer_ns = B })
    assert(core.link.set { ns = A, name = "va", up = true })
    assert(core.link.set { ns = B, name = "vb", up = true })
  end)
  after_each(function() assert(testns.cleanup()) end)

  it("adds, replaces, dumps and deletes IPv4 and IPv6 addresses", function()
    assert.is_true(core.addr.add { ns = A, dev = "va", addr = "192.0.2.1/24" })
    assert.is_true(core.addr.add { ns = A, dev = "va", addr = "2001:db8::1/64", nodad = true })
    local ok, err, ename = core.addr.add { ns = A, dev = "va", addr = "192.0.2.1/24" }
    assert.is_nil(ok)
    assert.equal("EEXIST", ename)
    assert.matches("Address already assigned", err, 1, true)
    assert.is_true(core.addr.add { ns = A, dev = "va", addr = "192.0.2.1/24", replace = true })
    local seen = {}
    for _, a in ipairs(ip_json(A, "addr show dev va")[1].addr_info) do
      seen[a["local"] .. "/" .. a.prefixlen] = a.family
    end
    assert.equal("inet", seen["192.0.2.1/24"])
    assert.equal("inet6", seen["2001:db8::1/64"])
    local dumped = {}
    for _, a in ipairs(core.addr.dump(A, "va")) do dumped[a.addr] = a end
    assert.equal(4, dumped["192.0.2.1/24"].family)
    assert.equal("global", dumped["2001:db8::1/64"].scope)
    assert.is_false(dumped["2001:db8::1/64"].tentative)
    assert.is_true(core.addr.delete { ns = A, dev = "va", addr = "192.0.2.1/24" })
    ok, err, ename = core.addr.delete { ns = A, dev = "va", addr = "192.0.2.1/24" }
    assert.is_nil(ok)
    assert.equal("EADDRNOTAVAIL", ename)
    ok, err, ename = core.addr.add { ns = A, dev = "nope", addr = "192.0.2.9/24" }
    assert.equal("ENODEV", ename)
  end)

  it("dumps one link's addresses only, named, and says when there is no such link", function()
    assert(core.addr.add { ns = A, dev = "va", addr = "192.0.2.1/24" })
    assert(core.link.bridge { ns = A, name = "other" })
    assert(core.addr.add { ns = A, dev = "other", addr = "198.51.100.7/24" })
    local devs = {}
    for _, a in ipairs(assert(core.addr.dump(A, "va"))) do devs[a.dev .. " " .. a.addr] = true end
    assert.is_true(devs["va 192.0.2.1/24"])
    for k in pairs(devs) do assert.matches("^va ", k) end
    local all = {}
    for _, a in ipairs(assert(core.addr.dump(A))) do all[a.dev .. " " .. a.addr] = true end
    assert.is_true(all["other 198.51.100.7/24"])
    assert.is_true(all["va 192.0.2.1/24"])
    local ok, _, ename = core.addr.dump(A, "nope")
    assert.is_nil(ok)
    assert.equal("ENODEV", ename)
  end)

  it("adds default, via and dev routes, replaces and deletes them", function()
    assert(core.addr.add { ns = A, dev = "va", addr = "192.0.2.1/24" })
    assert(core.addr.add { ns = A, dev = "va", addr = "2001:db8::1/64", nodad = true })
    assert.is_true(core.route.add { ns = A, family = 4, dst = "default", via = "192.0.2.2" })
    assert.is_true(core.route.add { ns = A, dst = "198.51.100.0/24", via = "192.0.2.3", dev = "va", metric = 7 })
    assert.is_true(core.route.add { ns = A, dst = "203.0.113.0/24", dev = "va" })
    assert.is_true(core.route.add { ns = A, family = 6, dst = "default", via = "2001:db8::2" })
    local routes = {}
    for _, r in ipairs(ip_json(A, "route show")) do routes[r.dst] = r end
    assert.equal("192.0.2.2", routes.default.gateway)
    assert.equal("192.0.2.3", routes["198.51.100.0/24"].gateway)
    assert.equal(7, routes["198.51.100.0/24"].metric)
    assert.equal("link", routes["203.0.113.0/24"].scope)
    local r6 = ip_json(A, "-6 route show default")[1]
    assert.equal("2001:db8::2", r6.gateway)
    local ok, err, ename = core.route.add { ns = A, family = 4, dst = "default", via = "192.0.2.9" }
    assert.equal("EEXIST", ename)
    assert.is_true(core.route.add { ns = A, family = 4, dst = "default", via = "192.0.2.9", replace = true })
    assert.equal("192.0.2.9", ip_json(A, "route show default")[1].gateway)
    ok, err, ename = core.route.add { ns = A, dst = "10.0.0.0/8", via = "10.9.9.9" }
    assert.is_nil(ok)
    assert.equal("ENETUNREACH", ename)
    assert.matches("Nexthop has invalid gateway", err, 1, true)
    local dumped = {}
    for _, r in ipairs(core.route.dump(A, { family = 4 })) do dumped[r.dst] = r end
    assert.equal("192.0.2.9", dumped.default.via)
    assert.equal("va", dumped.default.dev)
    assert.equal("kernel", dumped["192.0.2.0/24"].protocol)
    assert.equal("static", dumped["203.0.113.0/24"].protocol)
    for _, r in ipairs(core.route.dump(A, { family = 6 })) do assert.equal(6, r.family) end
    assert.is_true(core.route.delete { ns = A, family = 4, dst = "default", via = "192.0.2.9" })
    assert.is_true(core.route.delete { ns = A, family = 6, dst = "default", via = "2001:db8::2" })
    assert.same({}, ip_json(A, "route show default"))
    ok, err, ename = core.route.delete { ns = A, family = 4, dst = "default", via = "192.0.2.9" }
    assert.equal("ESRCH", ename)
  end)

  it("reaches across the veth once addressed and routed", function()
    assert(core.addr.add { ns = A, dev = "va", addr = "192.0.2.1/24" })
    assert(core.addr.add { ns = B, dev = "vb", addr = "192.0.2.2/24" })
    local _, ok = testns.exec(A, "ping -c 1 -W 2 192.0.2.2")
    assert.is_true(ok)
  end)

  it("sets net.* sysctls per namespace only", function()
    local own = core.sysctl.get(nil, "net.ipv4.ip_forward")
    assert.is_true(core.sysctl.set(A, "net.ipv4.ip_forward", 1))
    assert.equal("1", core.sysctl.get(A, "net.ipv4.ip_forward"))
    assert.equal("1", testns.exec(A, "cat /proc/sys/net/ipv4/ip_forward"))
    assert.equal("0", core.sysctl.get(B, "net.ipv4.ip_forward"))
    assert.equal(own, core.sysctl.get(nil, "net.ipv4.ip_forward"))
    assert.is_true(core.sysctl.set(A, "net.ipv6.conf.all.forwarding", "1"))
    assert.equal("1", testns.exec(A, "cat /proc/sys/net/ipv6/conf/all/forwarding"))
    assert.is_true(core.sysctl.set(A, "net/ipv4/conf/va/rp_filter", 2))
    assert.equal("2", testns.exec(A, "cat /proc/sys/net/ipv4/conf/va/rp_filter"))
    local ok, _, ename = core.sysctl.set(A, "net.ipv4.no_such_knob", 1)
    assert.is_nil(ok)
    assert.equal("ENOENT", ename)
  end)
end)
