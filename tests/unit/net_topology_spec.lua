-- Topology rules of DESIGN §5, on small hand-made networks.
local fake = require("fake_keys").install()
local net = require "zmesh.net"
local build = dofile("tests/fixtures/net/build.lua")

local function peers_by_id(cfg)
  local out = {}
  for _, p in ipairs(cfg.peers) do out[p.node_id] = p end
  return out
end

local function ids(cfg)
  local out = {}
  for _, p in ipairs(cfg.peers) do out[#out + 1] = p.node_id end
  return out
end

describe("net topology", function()
  it("makes public NRs a full mesh carrying /24, mesh /32 and /64", function()
    local n = build.network(net, { "pub4", "pub46", "pub4" }, fake, { ipv6_range = "fd00:1::/48" })
    local c = net.render(n, "n1")
    assert.same({ "n2", "n3" }, ids(c))
    local p2 = peers_by_id(c).n2
    assert.same({ "10.1.2.0/24", "100.64.1.2/32", "fd00:1:0:2::/64" }, p2.allowed_ips)
    assert.matches("^198%.51%.100%.%d+:518%d%d$", p2.endpoint)
    assert.is_nil(p2.persistent_keepalive)
    assert.equal("100.64.1.1/16", c.mesh_address)
    assert.equal("local", c.exit)
    assert.is_nil(c.exit_for_network)
  end)

  it("gives a hidden NR only its aggregators, primary carrying the whole network", function()
    local n = build.network(net, { "pub4", "pub4", "hid4" }, fake, { ipv6_range = "fd00:1::/48" })
    local t = net.topology(n)
    local aggs = t.aggregators.n3
    assert.equal(2, #aggs)
    local c = net.render(n, "n3")
    assert.same(aggs, ids(c)) -- primary first
    assert.same({ "10.1.0.0/16", "100.64.0.0/16", "fd00:1::/48" }, c.peers[1].allowed_ips)
    assert.same({}, c.peers[2].allowed_ips)
    for _, p in ipairs(c.peers) do
      assert.equal(25, p.persistent_keepalive)
      assert.truthy(p.endpoint)
    end
  end)

  it("lists hidden NRs on the aggregator without endpoint; others route via it", function()
    local n = build.network(net, { "pub4", "pub4", "pub4", "hid4" }, fake)
    local t = net.topology(n)
    local primary, backup = t.aggregators.n4[1], t.aggregators.n4[2]
    local on_primary = peers_by_id(net.render(n, primary)).n4
    assert.same({ "10.1.4.0/24", "100.64.1.4/32" }, on_primary.allowed_ips)
    assert.is_nil(on_primary.endpoint)
    assert.is_nil(on_primary.persistent_keepalive)
    assert.same({}, peers_by_id(net.render(n, backup)).n4.allowed_ips)
    local other
    for _, id in ipairs({ "n1", "n2", "n3" }) do
      if id ~= primary and id ~= backup then other = id end
    end
    local c = net.render(n, other)
    assert.is_nil(peers_by_id(c).n4)
    local via = peers_by_id(c)[primary].allowed_ips
    assert.truthy(table.concat(via, " "):find("10.1.4.0/24", 1, true))
  end)

  it("refuses hidden nodes without a public node, saying so", function()
    local n = build.network(net, { "hid4", "cgnat" }, fake)
    assert.has_error(function() net.render(n, "n1") end,
      "network t has hidden nodes (n1, n2) but no public node to serve as their aggregator: "
      .. "add a node with a public address, or one whose farmer set force_role \"public\"")
    -- show still works, with the problem
    local s = net.show(n)
    assert.matches("no public node", s.problem)
  end)

  it("moves hidden NRs to another aggregator when theirs is removed", function()
    local n = build.network(net, { "pub4", "pub4", "pub4", "hid4", "hid46" }, fake)
    local before = net.topology(n).aggregators.n4[1]
    local n2 = net.remove_node(n, before)
    local t = net.topology(n2)
    assert.not_equal(before, t.aggregators.n4[1])
    assert.is_nil(peers_by_id(net.render(n2, "n4"))[before])
    -- the backup becomes primary: its session is already warm
    assert.equal(net.topology(n).aggregators.n4[2], t.aggregators.n4[1])
  end)

  it("keeps aggregators when unrelated nodes come and go", function()
    local n = build.network(net, { "pub4", "pub4", "pub46", "hid4", "hid4" }, fake)
    local before = net.topology(n).aggregators.n4
    n = net.add_node(n, (build.facts("n9", "hid46", fake)))
    n = net.remove_node(n, "n5")
    assert.same(before, net.topology(n).aggregators.n4)
  end)

  it("routes everything through the sole exit", function()
    local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
    n = net.set_exit(n, "n2")
    local c1 = net.render(n, "n1")
    assert.equal("mesh", c1.exit)
    assert.same({ "0.0.0.0/0", "::/0" }, peers_by_id(c1).n2.allowed_ips)
    local c2 = net.render(n, "n2")
    assert.equal("local", c2.exit)
    assert.is_true(c2.exit_for_network)
    for _, p in ipairs(c2.peers) do
      for _, a in ipairs(p.allowed_ips) do assert.not_equal("0.0.0.0/0", a) end
    end
    local c3 = net.render(n, "n3")
    assert.equal("mesh", c3.exit)
    assert.same({ "0.0.0.0/0", "::/0" }, c3.peers[1].allowed_ips)
  end)

  it("routes to a hidden exit through its aggregator", function()
    local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
    n = net.set_exit(n, "n3")
    local t = net.topology(n)
    local primary = t.aggregators.n3[1]
    local other = primary == "n1" and "n2" or "n1"
    assert.same({ "0.0.0.0/0", "::/0" }, peers_by_id(net.render(n, primary)).n3.allowed_ips)
    assert.same({ "0.0.0.0/0", "::/0" }, peers_by_id(net.render(n, other))[primary].allowed_ips)
    assert.is_true(net.render(n, "n3").exit_for_network)
  end)

  it("uses IPv6 endpoints only when both ends have IPv6", function()
    local n = build.network(net, { "pub46", "pub46", "pub4" }, fake)
    local c1 = peers_by_id(net.render(n, "n1"))
    assert.matches("^%[2001:db8::%x+%]:%d+$", c1.n2.endpoint)
    assert.matches("^203%.0%.113%.%d+:%d+$", c1.n3.endpoint)
    assert.matches("^198%.51%.100%.%d+:%d+$", peers_by_id(net.render(n, "n3")).n1.endpoint)
  end)

  it("dials a port-forwarded node at its public endpoint", function()
    local n = build.network(net, { "fwd", "pub4" }, fake)
    assert.matches("^198%.51%.100%.2%d%d:%d+$", peers_by_id(net.render(n, "n2")).n1.endpoint)
  end)

  it("refuses two NRs listening on one address and port", function()
    local n = build.network(net, { "fwd", "pub4" }, fake)
    local f = build.facts("n3", "fwd", fake)
    f.public_endpoints = n.nodes[1].facts.public_endpoints
    n = net.add_node(n, f, { port = n.nodes[1].wireguard_listen_port })
    assert.has_error(function() net.render(n, "n2") end, string.format(
      "nodes[n3].wireguard_listen_port: %d clashes with node n1: both listen on %s:%d",
      n.nodes[1].wireguard_listen_port, f.public_endpoints[1], n.nodes[1].wireguard_listen_port))
  end)

  it("refuses public nodes with no address family in common", function()
    local n = build.network(net, { "pub4" }, fake)
    local f = build.facts("n2", "hid46", fake)
    f.addresses = { "2001:db8:9::2/64" } -- IPv6 only
    -- add-node refuses it: the network rendered before.
    local before = net.encode(n)
    assert.has_error(function() net.add_node(n, f) end,
      "nodes[n2]: public node n2 cannot reach public node n1 (no address family in common); "
      .. "set force_role \"hidden\" on one of them, or public_endpoints")
    assert.equal(before, net.encode(n))
    -- A file made so anyway does not render.
    local ok = net.add_node(n, build.facts("n2", "hid46", fake))
    ok.nodes[2].facts.addresses = { "2001:db8:9::2/64" }
    assert.has_error(function() net.render(ok, "n1") end,
      "nodes[n1]: public node n1 cannot reach public node n2 (no address family in common); "
      .. "set force_role \"hidden\" on one of them, or public_endpoints")
    -- An update that would leave two public nodes apart is refused too.
    assert.has_error(function() net.add_node(net.add_node(n, build.facts("n2", "hid46", fake)), f, { update = true }) end,
      "nodes[n2]: public node n2 cannot reach public node n1 (no address family in common); "
      .. "set force_role \"hidden\" on one of them, or public_endpoints")
  end)

  it("refuses a hidden node that can reach no public node", function()
    local n = build.network(net, { "pub46" }, fake)
    local f = build.facts("n2", "hid46", fake)
    f.addresses = { "2001:db8:9::2/64" }
    f.force_role = "hidden"
    n = net.add_node(n, f)
    n.nodes[1].facts.addresses = { "198.51.100.1/24" }
    assert.has_error(function() net.render(n, "n1") end,
      "nodes[n2]: hidden node n2 can reach no public node (no address family in common)")
  end)

  it("sorts peers and renders the same bytes twice", function()
    local n = build.network(net, { "pub4", "hid4", "pub46", "pub4", "hid46" }, fake)
    local a = build.encode_all(net.render_all(n))
    local path = os.tmpname()
    net.save(n, path)
    local b = build.encode_all(net.render_all(net.load(path)))
    os.remove(path)
    assert.equal(a, b)
    local ids3 = ids(net.render(n, "n3"))
    local sorted = { table.unpack(ids3) }
    table.sort(sorted)
    assert.same(sorted, ids3)
  end)

  it("seals each NR's private key to its node, matching its public key", function()
    local n, node_keys = build.network(net, { "pub4", "hid4" }, fake)
    for _, node in ipairs(n.nodes) do
      local c = net.render(n, node.node_id)
      local k = assert(fake.key.open_sealed(c.wireguard_private_key, node_keys[node.node_id]))
      assert.equal(node.wireguard_public_key, k:public())
      assert.is_nil(fake.key.open_sealed(c.wireguard_private_key, node_keys[node.node_id == "n1" and "n2" or "n1"]))
    end
  end)
end)
