-- The network tool's routed IPv6 prefix, exposures and per-path MTU: the
-- file, its checks (one message naming the field), what is rendered.
local fake = require("fake_keys").install()
local json = require "zmesh.json"
local net = require "zmesh.net"
local nr_config = require "zmesh.nr.config"
local build = dofile("tests/fixtures/net/build.lua")

local ROUTED = "2001:db8:100::/48"

local function fails(fn, pattern)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  assert.matches(pattern, tostring(err), 1, true)
end

-- n1, n2 public with IPv6, n3 hidden; routed prefix; exit n1 then n2.
local function network(p)
  p = p or {}
  local n = build.network(net, p.kinds or { "pub46", "pub46", "hid4" }, fake,
    { net_id = "rt", ipv6_range = p.ipv6_range })
  n = net.set_exit(n, p.exits or { "n1", "n2" })
  return (net.set_routed_ipv6(n, ROUTED))
end

describe("routed IPv6", function()
  it("is a global prefix, named when it is not", function()
    local n = net.new({ name = "r", ip_range = "10.1.0.0/16", routed_ipv6 = ROUTED, net_id = "r1" })
    assert.equal(ROUTED, n.routed_ipv6)
    fails(function() net.new({ name = "r", ip_range = "10.1.0.0/16", routed_ipv6 = "fd00:9::/48" }) end,
      "routed_ipv6: 'fd00:9::/48' must be a global unicast prefix")
    fails(function() net.new({ name = "r", ip_range = "10.1.0.0/16", routed_ipv6 = "2001:db8::/80" }) end,
      "routed_ipv6: '2001:db8::/80' is smaller than one /64")
    fails(function() net.new({ name = "r", ip_range = "10.1.0.0/16", routed_ipv6 = "2001:db8::1/48" }) end,
      "routed_ipv6: '2001:db8::1/48' is not a valid prefix")
    fails(function()
      net.new({ name = "r", ip_range = "10.1.0.0/16", ipv6_range = "2001:db8::/32", routed_ipv6 = ROUTED })
    end, "routed_ipv6: '2001:db8:100::/48' overlaps ipv6_range 2001:db8::/32")
  end)

  it("refuses a routed prefix that holds a node's own address (the exit would route it into the mesh)", function()
    local n = build.network(net, { "pub46", "pub4" }, fake, { net_id = "rt" })
    local addr
    for _, s in ipairs(n.nodes[1].facts.addresses) do if s:find(":", 1, true) then addr = s end end
    local wide = require("zmesh.ip").format_cidr(require("zmesh.ip").network(
      (function() local p = require("zmesh.ip").parse_cidr(addr) p.len = 32 return p end)()))
    local before = net.encode(n)
    fails(function() net.set_routed_ipv6(n, wide) end, "routed_ipv6: '" .. wide .. "' holds " .. addr
      .. ", an address of node n1: the exit would route it into the mesh")
    assert.equal(before, net.encode(n))
  end)

  it("gives each NR a /64 at the index of its /24, new and added nodes alike", function()
    local n = network({ ipv6_range = "fd00:7::/48" })
    for i, node in ipairs(n.nodes) do
      assert.equal(string.format("2001:db8:100:%d::/64", i), node.routed_ipv6_subnet)
      assert.equal(string.format("fd00:7:0:%d::/64", i), node.ipv6_subnet)
    end
    local n2, node = net.add_node(n, (build.facts("n9", "pub4", fake)))
    assert.equal("2001:db8:100:4::/64", node.routed_ipv6_subnet)
    -- none removes it from the network and every node.
    local n3 = net.set_routed_ipv6(n2, "none")
    assert.is_nil(n3.routed_ipv6)
    for _, x in ipairs(n3.nodes) do assert.is_nil(x.routed_ipv6_subnet) end
  end)

  it("enters at the exit: refused without one, at a hidden one or one without IPv6", function()
    local n = build.network(net, { "pub46", "pub4", "hid4" }, fake, { net_id = "rt" })
    n = net.set_routed_ipv6(n, ROUTED)
    fails(function() net.render(n, "n1") end, "routed_ipv6: 2001:db8:100::/48 has no entry point")
    -- An exit that cannot be the entry point is refused when set, in either order.
    fails(function() net.set_exit(n, "n3") end,
      "exit: 'n3' is a hidden node: the entry point of routed_ipv6 2001:db8:100::/48 must be public")
    fails(function() net.set_exit(n, { "n1", "n2" }) end,
      "exit[2]: 'n2' has no global IPv6 address in its facts")
    local hidden_exit = net.set_exit(net.set_routed_ipv6(n, "none"), "n3")
    fails(function() net.set_routed_ipv6(hidden_exit, ROUTED) end, "exit: 'n3' is a hidden node")
    -- A file made so by hand is still refused where it is used.
    local by_hand = net.set_exit(n, "n1")
    by_hand.exit = "n3"
    fails(function() net.render(by_hand, "n1") end, "exit: 'n3' is a hidden node")
    assert.equal(ROUTED, net.render(net.set_exit(n, "n1"), "n1").routed_ipv6)
    -- show tells it, and still shows the network.
    assert.matches("no entry point", net.show(n).problem, 1, true)
  end)

  it("is owned per NR like its /24, so the same paths carry it; hidden NRs send it to their primary", function()
    local n = network()
    local configs = net.render_all(n)
    for id, c in pairs(configs) do
      local cfg = nr_config.validate(c)
      assert.equal(ROUTED, cfg.routed_ipv6)
      local mine
      for _, node in ipairs(n.nodes) do if node.node_id == id then mine = node.routed_ipv6_subnet end end
      assert.equal(mine, cfg.routed_ipv6_subnet)
      local owned = c.failover.nodes[id].owned
      assert.equal(mine, owned[#owned])
    end
    local range = configs.n3.failover.range
    assert.equal(ROUTED, range[#range])
  end)

  it("exposes one port of one container: to the entry NRs all, to the container's NR its own", function()
    local n = network()
    local n2, x = net.expose(n, { node = "n3", address = "2001:db8:100:3:0::10", port = "8080/tcp" })
    assert.same({ node = "n3", address = "2001:db8:100:3::10", proto = "tcp", port = 8080 }, x)
    n2 = net.expose(n2, { node = "n1", address = "2001:db8:100:1::20", port = 53, proto = "udp" })
    local c = net.render_all(n2)
    assert.equal(2, #c.n1.expose)
    assert.equal(2, #c.n2.expose)
    assert.same({ { address = "2001:db8:100:3::10", proto = "tcp", port = 8080 } }, c.n3.expose)
    for _, cfg in pairs(c) do nr_config.validate(cfg) end
    -- Bad input: one message naming the field, nothing changed.
    fails(function() net.expose(n2, { node = "n3", address = "2001:db8:100:2::10", port = "8080/tcp" }) end,
      "expose.address: '2001:db8:100:2::10' is not in n3's routed subnet 2001:db8:100:3::/64")
    fails(function() net.expose(n2, { node = "n3", address = "2001:db8:100:3::1", port = "80/tcp" }) end,
      "is the routed subnet's network or gateway address")
    fails(function() net.expose(n2, { node = "n3", address = "2001:db8:100:3::10", port = "8080/tcp" }) end,
      "address: '2001:db8:100:3::10' has tcp/8080 exposed already")
    fails(function() net.expose(n2, { node = "n3", address = "2001:db8:100:3::10", port = "70000/tcp" }) end,
      "port: 70000 must be a port 1..65535")
    fails(function() net.expose(n2, { node = "n3", address = "2001:db8:100:3::10", port = "80/sctp" }) end,
      "port: 'sctp' must be tcp or udp")
    fails(function() net.expose(n2, { node = "n3", address = "2001:db8:100:3::10", port = 80 }) end,
      "proto: (missing) must be tcp or udp")
    fails(function() net.expose(n2, { node = "n7", address = "2001:db8:100:3::10", port = "80/tcp" }) end,
      "expose.node: 'n7' is not a node of the network")
    assert.equal(2, #n2.expose)
    -- Closed again; removing the node closes its own.
    local n3 = net.unexpose(n2, { node = "n1", address = "2001:db8:100:1::20", port = "53/udp" })
    assert.equal(1, #n3.expose)
    fails(function() net.unexpose(n3, { node = "n1", address = "2001:db8:100:1::20", port = "53/udp" }) end,
      "has no udp/53 exposed on n1")
    local n4, notes = net.remove_node(n3, "n3")
    assert.is_nil(n4.expose)
    assert.matches("2001:db8:100:3::10 tcp/8080 was exposed on n3 and is closed", notes[#notes], 1, true)
    -- A new prefix renumbers, and closes what was exposed in the old one.
    local n5, notes5 = net.set_routed_ipv6(n2, "2001:db8:200::/48")
    assert.is_nil(n5.expose)
    assert.equal("2001:db8:200:1::/64", n5.nodes[1].routed_ipv6_subnet)
    assert.matches("2 exposure(s) of 2001:db8:100::/48 closed", notes5[1], 1, true)
  end)

  it("checks exposures in a file by their full path", function()
    local n = network()
    n.expose = { { node = "n3", address = "2001:db8:100:3::10", proto = "tcp", port = 8080, extra = 1 } }
    fails(function() net.validate(n) end, "expose[1].extra: 1 is not a field of an exposure")
    n.expose = { { node = "n3", address = "2001:db8:100:3:0::10", proto = "tcp", port = 8080 } }
    fails(function() net.validate(n) end, "expose[1].address: '2001:db8:100:3:0::10' is not in its shortest form")
    n.expose = { { node = "n3", address = "2001:db8:100:3::10", proto = "tcp", port = 8080 },
      { node = "n3", address = "2001:db8:100:3::10", proto = "tcp", port = 8080 } }
    fails(function() net.validate(n) end, "expose[2]: '2001:db8:100:3::10 tcp/8080' is exposed twice")
    n.nodes[1].routed_ipv6_subnet = "2001:db8:101:1::/64"
    n.expose = nil
    fails(function() net.validate(n) end,
      "nodes[n1].routed_ipv6_subnet: '2001:db8:101:1::/64' is outside routed_ipv6 2001:db8:100::/48")
    n.nodes[1].routed_ipv6_subnet = nil
    fails(function() net.validate(n) end, "nodes[n1].routed_ipv6_subnet: (missing) is required")
  end)
end)

describe("MTU per path", function()
  it("is not rendered while no node's facts give an uplink MTU", function()
    local n = build.network(net, { "pub46", "pub4", "hid4" }, fake, { net_id = "m1" })
    for _, c in pairs(net.render_all(n)) do
      assert.is_nil(c.mtu)
      assert.is_nil(c.routed_ipv6)
      assert.is_nil(c.expose)
    end
  end)

  it("takes, per NR, the smallest of its paths: the smaller uplink, less 80 over IPv6, 60 over IPv4", function()
    local f1 = build.facts("n1", "pub46", fake)
    local f2 = build.facts("n2", "pub46", fake)
    f2.mtu = 1400
    local f3 = build.facts("n3", "pub4", fake)
    local f4 = build.facts("n4", "hid4", fake)
    local n = net.new({ name = "m", ip_range = "10.1.0.0/16", net_id = "m2" })
    for _, f in ipairs({ f1, f2, f3, f4 }) do n = net.add_node(n, f) end
    local c = net.render_all(n)
    -- n1–n2 over IPv6: 1400 - 80; n3 (IPv4 only) – n2: 1400 - 60.
    assert.equal(1320, c.n1.mtu)
    assert.equal(1320, c.n2.mtu)
    assert.equal(1340, c.n3.mtu)
    -- n4 (hidden, IPv4) to its aggregators: n2 among them?
    local agg = {}
    for _, p in ipairs(c.n4.peers) do agg[p.node_id] = true end
    assert.equal(agg.n2 and 1340 or 1440, c.n4.mtu)
    for _, cfg in pairs(c) do assert.equal(cfg.mtu, nr_config.validate(cfg).mtu) end
  end)

  it("names a bad uplink MTU in the facts", function()
    local f = build.facts("n1", "pub4", fake)
    f.mtu = 1000
    local n = net.new({ name = "m", ip_range = "10.1.0.0/16" })
    fails(function() net.add_node(n, f) end, "facts.mtu: 1000 must be an integer from 1280 to 65535")
  end)
end)

describe("add-node --update", function()
  it("says what changed in the node's facts (a new address from DHCP)", function()
    local n = build.network(net, { "pub4", "pub4" }, fake, { net_id = "u1" })
    local f = require("zmesh.net.model").copy(n.nodes[2].facts)
    local old = f.addresses[1]
    f.addresses = { "198.51.100.77/24" }
    f.mtu = 1400
    local n2, node, changes = net.add_node(n, f, { update = true })
    assert.same({ "198.51.100.77/24" }, node.facts.addresses)
    assert.same({ "addresses: " .. old .. " → 198.51.100.77/24", "mtu: none → 1400" }, changes)
    -- The same facts again: nothing changed.
    local _, _, again = net.add_node(n2, require("zmesh.net.model").copy(node.facts), { update = true })
    assert.same({}, again)
    -- n1's config dials n2 at its new address.
    local c = net.render(n2, "n1")
    assert.matches("198.51.100.77:", json.encode(c.peers), 1, true)
  end)
end)
