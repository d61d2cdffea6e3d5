local json = require "zmesh.json"
-- The Lua API behind every `zmesh net` command.
local fake = require("fake_keys").install()
local net = require "zmesh.net"
local build = dofile("tests/fixtures/net/build.lua")

-- The facts of node ID in N, as add-node --update would get them again.
local function model_facts(n, id)
  for _, node in ipairs(n.nodes) do
    if node.node_id == id then return require("zmesh.net.model").copy(node.facts) end
  end
end

describe("net API", function()
  describe("new", function()
    it("makes an empty network with the given fields", function()
      local n = net.new({ name = "demo", ip_range = "10.1.0.0/16", ipv6_range = "fd00:1::/48", net_id = "demo1" })
      assert.same({ format = 1, name = "demo", ip_range = "10.1.0.0/16", ipv6_range = "fd00:1::/48",
        net_id = "demo1", nodes = {} }, n)
    end)
  end)

  describe("add_node", function()
    it("assigns the lowest free /24 and /64 with the same index, a port and a sealed key", function()
      local n = net.new({ name = "demo", ip_range = "10.1.0.0/16", ipv6_range = "fd00:1::/48", net_id = "demo1" })
      local f, key = build.facts("a", "pub4", fake)
      local node
      n, node = net.add_node(n, f)
      assert.equal("10.1.1.0/24", node.subnet)
      assert.equal("fd00:1:0:1::/64", node.ipv6_subnet)
      assert.is_true(node.wireguard_listen_port >= 51820 and node.wireguard_listen_port <= 51829)
      assert.equal(f.public_key, node.sealed_to)
      local k = assert(fake.key.open_sealed(node.wireguard_private_key, key))
      assert.equal(node.wireguard_public_key, k:public())
      n = net.add_node(n, (build.facts("b", "hid4", fake)))
      assert.equal("10.1.2.0/24", n.nodes[2].subnet)
    end)

    it("closes every key it makes", function()
      local n = net.new({ name = "demo", ip_range = "10.1.0.0/16" })
      local f = build.facts("a", "pub4", fake)
      collectgarbage()
      collectgarbage()
      local live = fake.live()
      net.add_node(n, f)
      assert.equal(live, fake.live())
    end)

    it("honours a fixed subnet, IPv6 subnet and port", function()
      local n = net.new({ name = "demo", ip_range = "10.1.0.0/16", ipv6_range = "fd00:1::/48" })
      local node
      n, node = net.add_node(n, (build.facts("a", "pub4", fake)),
        { subnet = "10.1.77.0/24", port = 51825 })
      assert.equal("10.1.77.0/24", node.subnet)
      assert.equal("fd00:1:0:4d::/64", node.ipv6_subnet) -- same index as the /24
      assert.equal(51825, node.wireguard_listen_port)
      n, node = net.add_node(n, (build.facts("b", "pub4", fake)), { ipv6_subnet = "fd00:1:0:99::/64" })
      assert.equal("10.1.1.0/24", node.subnet)
      assert.equal("fd00:1:0:99::/64", node.ipv6_subnet)
    end)

    it("refuses a fixed subnet in use or outside the range, or a port outside the node's", function()
      local n = build.network(net, { "pub4" }, fake)
      assert.has_error(function() net.add_node(n, (build.facts("b", "pub4", fake)), { subnet = "10.1.1.0/24" }) end,
        "subnet: '10.1.1.0/24' is in use by n1")
      assert.has_error(function() net.add_node(n, (build.facts("b", "pub4", fake)), { subnet = "10.9.1.0/24" }) end,
        "subnet: '10.9.1.0/24' is outside ip_range 10.1.0.0/16")
      assert.has_error(function() net.add_node(n, (build.facts("b", "pub4", fake)), { port = 80 }) end,
        "nodes[b].wireguard_listen_port: 80 is outside the node's listen_ports 51820-51829")
    end)

    it("refuses a node already in the network unless updating", function()
      local n = build.network(net, { "pub4" }, fake)
      local f = build.facts("n1", "pub4", fake)
      assert.has_error(function() net.add_node(n, f) end,
        "facts.node_id: 'n1' is already a node of network t (add-node --update refreshes its facts)")
      assert.has_error(function() net.add_node(n, (build.facts("n2", "pub4", fake)), { update = true }) end,
        "facts.node_id: 'n2' is not a node of network t; nothing to update")
    end)

    it("refuses the same node under two ids", function()
      local n = build.network(net, { "pub4" }, fake)
      local f = build.facts("other", "pub4", fake)
      f.public_key = n.nodes[1].facts.public_key
      assert.has_error(function() net.add_node(n, f) end,
        "nodes[other].facts.public_key: (a key, not shown) is the key of node n1 too: a duplicate node")
    end)

    it("on update keeps subnet and port, and re-keys only when the node key changed", function()
      local n = build.network(net, { "pub4", "pub4" }, fake)
      local old = n.nodes[1]
      local f = build.facts("n1", "pub46", fake)
      f.public_key = old.facts.public_key
      local same = net.add_node(n, f, { update = true })
      assert.equal(old.subnet, same.nodes[1].subnet)
      assert.equal(old.wireguard_listen_port, same.nodes[1].wireguard_listen_port)
      assert.equal(old.wireguard_private_key, same.nodes[1].wireguard_private_key)
      assert.same(f.addresses, same.nodes[1].facts.addresses)
      local f2, key2 = build.facts("n1", "pub4", fake)
      local rekeyed = net.add_node(n, f2, { update = true })
      local node = rekeyed.nodes[1]
      assert.equal(old.subnet, node.subnet)
      assert.not_equal(old.wireguard_public_key, node.wireguard_public_key)
      assert.equal(f2.public_key, node.sealed_to)
      assert.equal(node.wireguard_public_key, fake.key.open_sealed(node.wireguard_private_key, key2):public())
    end)

    it("never reuses a subnet still in use after removals", function()
      local n = build.network(net, { "pub4", "pub4", "pub4" }, fake)
      n = net.remove_node(n, "n1")
      n = net.add_node(n, (build.facts("n4", "pub4", fake)))
      n = net.add_node(n, (build.facts("n5", "pub4", fake)))
      local seen = {}
      for _, node in ipairs(n.nodes) do
        assert.is_nil(seen[node.subnet])
        seen[node.subnet] = true
      end
    end)

    it("spreads ports by network, and avoids ports of NRs on the same address", function()
      local a = build.network(net, { "fwd" }, fake, { net_id = "aaa" })
      local f = build.facts("n2", "fwd", fake)
      f.public_endpoints = a.nodes[1].facts.public_endpoints
      local _, node = net.add_node(a, f)
      assert.not_equal(a.nodes[1].wireguard_listen_port, node.wireguard_listen_port)
      local ports = {}
      for _, id in ipairs({ "aaa", "bbb", "ccc", "ddd", "eee" }) do
        ports[build.network(net, { "pub4" }, fake, { net_id = id }).nodes[1].wireguard_listen_port] = true
      end
      local distinct = 0
      for _ in pairs(ports) do distinct = distinct + 1 end
      assert.is_true(distinct >= 2)
    end)

    it("leaves the caller's network untouched", function()
      local n = build.network(net, { "pub4" }, fake)
      local before = net.encode(n)
      net.add_node(n, (build.facts("n2", "pub4", fake)))
      assert.equal(before, net.encode(n))
    end)
  end)

  describe("remove_node", function()
    it("removes the node, clears the exit and drops devices served by it, with notes", function()
      local n = build.network(net, { "pub4", "pub4" }, fake)
      n = net.set_exit(n, "n1")
      n = net.add_access(n, "laptop", { via = "n1" })
      local out, notes = net.remove_node(n, "n1")
      assert.is_nil(out.exit)
      assert.is_nil(out.access)
      assert.equal(1, #out.nodes)
      assert.same({ "n1 was the sole exit: every NR now breaks out locally",
        "device laptop peered with n1 and was removed: add it again with add-access" }, notes)
    end)

    it("says so when the node was an exit candidate after the first", function()
      local n = build.network(net, { "pub4", "pub4", "pub4" }, fake)
      n = net.set_exit(n, { "n1", "n2", "n3" })
      local out, notes = net.remove_node(n, "n2")
      assert.same({ "n1", "n3" }, out.exit)
      assert.same({ "n2 was an exit candidate: the candidates are now n1, n3" }, notes)
    end)

    it("refuses an unknown node", function()
      assert.has_error(function() net.remove_node(build.network(net, { "pub4" }, fake), "zz") end,
        "node: 'zz' is not a node of network t")
    end)
  end)

  describe("set_exit", function()
    it("sets and clears the sole exit", function()
      local n = build.network(net, { "pub4", "pub4" }, fake)
      assert.equal("n2", net.set_exit(n, "n2").exit)
      assert.is_nil(net.set_exit(net.set_exit(n, "n2"), "none").exit)
      assert.is_nil(net.set_exit(net.set_exit(n, "n2"), nil).exit)
      assert.has_error(function() net.set_exit(n, "n3") end, "exit: 'n3' is not a node of network t")
    end)

    it("says what an exit candidate lacks: global IPv6 where others have it, IPv4 to probe with", function()
      local n = build.network(net, { "pub46", "pub4" }, fake)
      local _, notes = net.set_exit(n, "n2")
      assert.same({ "n2 has no global IPv6 address: while it is the exit, no container reaches the IPv6 Internet" },
        notes)
      n = build.network(net, { "pub46", "pub46" }, fake)
      local f = build.facts("n3", "pub46", fake)
      f.addresses = { f.addresses[2] }
      n = net.add_node(n, f)
      _, notes = net.set_exit(n, { "n1", "n3" })
      assert.same({ "n3 has no IPv4 address: it cannot ping the IPv4 probe targets, so it is the exit only when "
        .. "no candidate reaches the Internet" }, notes)
    end)

    it("keeps the probe addresses while there is an exit, and forgets them with none", function()
      local n = build.network(net, { "pub4", "pub4" }, fake)
      n = net.set_exit(n, { "n1", "n2" }, { internet_targets = { "192.0.2.1" } })
      n = net.set_exit(n, { "n2", "n1" })
      assert.same({ "192.0.2.1" }, n.internet_targets)
      assert.same({ "192.0.2.1" }, net.show(n).internet_targets)
      assert.has_error(function() net.set_exit(n, "none", { internet_targets = { "192.0.2.1" } }) end)
      assert.is_nil(net.set_exit(n, "none").internet_targets)
    end)
  end)

  describe("add_access, with a policy that leaves the device out", function()
    it("names the policy, not the network", function()
      local n = build.network(net, { "pub4", "hid4" }, fake)
      local ok, err = pcall(net.add_access, n, "phone", { policy_dir = "tests/fixtures/net/policies/skip_device" })
      assert.is_false(ok)
      assert.matches("skip_device/aggregator.lua:%d+: policy aggregator: hook aggregators: gave access:phone no aggregator",
        err)
    end)
  end)

  describe("add_access", function()
    it("prints a wg-quick config peering with an aggregator, and stores no private key", function()
      local n = build.network(net, { "pub4", "hid4" }, fake, { ipv6_range = "fd00:1::/48" })
      local config, device
      n, config, device = net.add_access(n, "laptop")
      assert.equal("n1", device.via) -- the only public node
      assert.equal("10.1.3.1/32", device.address)
      assert.equal("fd00:1:0:3::1/128", device.ipv6_address)
      assert.matches("\n%[Interface%]\nPrivateKey = [A-Za-z0-9+/]+=\nAddress = 10%.1%.3%.1/32, fd00:1:0:3::1/128\n", config)
      assert.matches("\nPublicKey = " .. n.nodes[1].wireguard_public_key:gsub("%p", "%%%0") .. "\n", config)
      assert.matches("\nEndpoint = 203%.0%.113%.%d+:518%d%d\n", config)
      assert.matches("\nAllowedIPs = 10%.1%.0%.0/16, 100%.64%.0%.0/16, fd00:1::/48\n", config)
      assert.matches("\nPersistentKeepalive = 25\n", config)
      local private = config:match("PrivateKey = (%S+)")
      assert.is_nil(net.encode(n):find(private, 1, true))
      -- the aggregator lists it; a hidden NR reaches it through its primary
      local agg = net.render(n, "n1")
      local found
      for _, p in ipairs(agg.peers) do
        if p.node_id == "access:laptop" then found = p end
      end
      assert.same({ "10.1.3.1/32", "fd00:1:0:3::1/128" }, found.allowed_ips)
      assert.is_nil(found.endpoint)
      local second
      n, second = net.add_access(n, "phone")
      assert.matches("Address = 10%.1%.3%.2/32", second)
    end)

    it("refuses a hidden or unknown via, a duplicate name, and no public node", function()
      local n = build.network(net, { "pub4", "hid4" }, fake)
      assert.has_error(function() net.add_access(n, "x", { via = "n2" }) end, "via: 'n2' is not a public node of network t")
      assert.has_error(function() net.add_access(n, "x", { via = "n9" }) end, "via: 'n9' is not a public node of network t")
      assert.has_error(function() net.add_access(n, "bad name") end, "name: 'bad name' must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 64 characters)")
      n = net.add_access(n, "x")
      assert.has_error(function() net.add_access(n, "x") end, "name: 'x' is already a device of network t")
      assert.has_error(function() net.add_access(build.network(net, { "pub4", "pub4" }, fake, { ip_range = "10.1.0.0/23" }), "y") end,
        "access: ip_range 10.1.0.0/23 has no free /24 left")
    end)

    it("is removed by remove_access, freeing the access subnet", function()
      local n = build.network(net, { "pub4" }, fake)
      n = net.add_access(n, "x")
      n = net.remove_access(n, "x")
      assert.is_nil(n.access)
      assert.is_nil(n.access_subnet)
      assert.has_error(function() net.remove_access(n, "x") end, "name: 'x' is not a device of network t")
    end)
  end)

  describe("show and validate", function()
    it("summarise roles, aggregators and the exit", function()
      local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
      n = net.set_exit(n, "n1")
      local s = net.show(n)
      assert.equal("n1", s.exit)
      assert.equal("public", s.nodes[1].role)
      assert.equal("hidden", s.nodes[3].role)
      assert.equal(2, #s.nodes[3].aggregators)
      assert.is_true(s.nodes[1].exit)
      local v = net.validate(n)
      assert.equal(2, v.public)
      assert.equal(1, v.hidden)
    end)
  end)

  describe("aggregator memory", function()
    -- Every hidden NR's aggregators, as N renders them.
    local function served(n) return net.topology(n).aggregators end

    local function without_record(n)
      local out = require("zmesh.net.model").copy(n)
      for _, node in ipairs(out.nodes) do node.aggregators = nil end
      return out
    end

    -- A public node id that rendezvous hashing ranks first in N: added
    -- to a file without the record, it would become the primary of
    -- hidden node H, and of every other.
    local function outscoring(n, h)
      for i = 1, 200 do
        local id = "p" .. i
        local with = without_record(net.add_node(n, (build.facts(id, "pub4", fake))))
        if served(with)[h][1] == id then return id end
      end
      error("no id outscores the primary")
    end

    it("records each hidden node's aggregators in the file, as rendered", function()
      local n = build.network(net, { "pub4", "pub4", "pub46", "hid4", "hid46" }, fake)
      local t = net.topology(n)
      for _, node in ipairs(n.nodes) do
        assert.same(t.role[node.node_id] == "hidden" and t.aggregators[node.node_id] or nil, node.aggregators)
      end
      assert.equal(2, #n.nodes[4].aggregators)
      local path = os.tmpname()
      net.save(n, path)
      local back = net.load(path)
      os.remove(path)
      assert.same(n.nodes[4].aggregators, back.nodes[4].aggregators)
      assert.equal(net.render_all_json(n), net.render_all_json(back))
    end)

    it("keeps every primary when a new public node outscores it", function()
      local n = build.network(net, { "pub4", "pub4", "hid4", "hid4" }, fake)
      local before = served(n)
      local id = outscoring(n, "n3")
      local after = served(net.add_node(n, (build.facts(id, "pub4", fake))))
      assert.same(before.n3, after.n3)
      assert.same(before.n4, after.n4)
      -- and a device added later joins that primary too
      local _, _, device = net.add_access(net.add_node(n, (build.facts(id, "pub4", fake))), "laptop")
      assert.equal(before.n3[1], device.via)
    end)

    it("gives a file without the record one on its next change, keeping what it rendered", function()
      local legacy = without_record(build.network(net, { "pub4", "pub4", "pub4", "hid4", "hid46" }, fake))
      local before = served(legacy)
      local changed = net.set_exit(legacy, "n1")
      assert.same(before.n4, changed.nodes[4].aggregators)
      assert.same(before.n5, changed.nodes[5].aggregators)
      -- the record holds what it rendered to: the render does not change
      assert.equal(net.render_all_json(without_record(changed)), net.render_all_json(changed))
      local id = outscoring(legacy, "n4")
      local after = net.add_node(legacy, (build.facts(id, "pub4", fake)))
      assert.same(before.n4, served(after).n4)
      assert.same(before.n4, after.nodes[4].aggregators)
    end)

    it("moves hidden NRs to their backup when the primary is removed, with a new backup", function()
      local n = build.network(net, { "pub4", "pub4", "pub4", "hid4", "hid46" }, fake)
      local before = served(n).n4
      local out = net.remove_node(n, before[1])
      local after = served(out).n4
      assert.equal(before[2], after[1])
      assert.equal(2, #after)
      assert.not_equal(before[1], after[2])
      assert.same(after, out.nodes[4].aggregators)
      assert.same(after, served(out).n5)
      -- the last public node goes: nothing left to record, and the file stays valid
      local lone = net.remove_node(build.network(net, { "pub4", "hid4" }, fake), "n1")
      assert.is_nil(lone.nodes[1].aggregators)
      assert.matches("no public node", net.show(lone).problem)
    end)
  end)

  describe("changes that would leave a renderable network unrenderable", function()
    it("refuses clearing the exit a routed prefix enters by, and leaves the network as it was", function()
      local n = build.network(net, { "pub46", "pub46", "hid4" }, fake)
      n = net.set_routed_ipv6(net.set_exit(n, "n1"), "2001:db8:100::/48")
      local before = json.encode(n)
      assert.has_error(function() net.set_exit(n, "none") end,
        "routed_ipv6: 2001:db8:100::/48 has no entry point: the exit NR is the routed prefix's entry point "
        .. "(zmesh net set-exit FILE NODE)")
      assert.equal(before, json.encode(n))
      -- A prefix still waiting for its exit may be set, and the exit after it.
      local waiting = net.set_routed_ipv6(build.network(net, { "pub46", "hid4" }, fake), "2001:db8:100::/48")
      assert.truthy(net.set_exit(waiting, "n1"))
    end)

    it("removes the last public node, saying that the network no longer renders", function()
      local _, notes = net.remove_node(build.network(net, { "pub4", "hid4" }, fake), "n1")
      assert.matches("^the network no longer renders until this is mended: network t has hidden nodes %(n2%)",
        notes[#notes])
      local _, quiet = net.remove_node(build.network(net, { "pub4", "pub4", "hid4" }, fake), "n1")
      assert.same({}, quiet)
    end)
  end)

  describe("policy faults", function()
    local dir = "tests/fixtures/net/policies/"
    local badrole = dir .. 'badrole/role.lua:4: policy role: hook role: node n1: returned maybe, expected "public" or "hidden"'

    it("refuses a policy directory that is not there (it would give the default policies)", function()
      local n = build.network(net, { "pub4" }, fake)
      assert.has_error(function() net.render(n, "n1", { policy_dir = "tests/nosuchdir" }) end,
        "policy_dir: 'tests/nosuchdir' is not a directory")
      assert.has_error(function() net.render(n, "n1", { policy_dir = "README.md" }) end,
        "policy_dir: 'README.md' is not a directory")
    end)

    it("raise from every operation with the file and line, never as a network's problem", function()
      local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
      n = net.add_access(n, "laptop")
      local opts = { policy_dir = dir .. "badrole" }
      local ops = {
        show = function() return net.show(n, opts) end,
        validate = function() return net.validate(n, opts) end,
        render = function() return net.render(n, "n1", opts) end,
        graph = function() return net.graph(n, opts) end,
        add_node = function() return net.add_node(n, (build.facts("n9", "pub4", fake)), opts) end,
        update = function()
          return net.add_node(n, model_facts(n, "n3"), { update = true, policy_dir = opts.policy_dir })
        end,
        remove_node = function() return net.remove_node(n, "n3", opts) end,
        set_exit = function() return net.set_exit(n, "n2", opts) end,
        add_access = function() return net.add_access(n, "phone", opts) end,
        remove_access = function() return net.remove_access(n, "laptop", opts) end,
      }
      for name, op in pairs(ops) do
        local ok, err = pcall(op)
        assert.is_false(ok, name)
        assert.equal(badrole, err, name)
      end
      -- a policy answering the wrong type, on a network that shows fine
      local ok, err = pcall(net.show, n, { policy_dir = dir .. "wrongtype" })
      assert.is_false(ok)
      assert.equal(dir .. "wrongtype/aggregator.lua:4: policy aggregator: hook aggregators: returned string, expected a table", err)
    end)

    it("are told apart from a network that cannot be served yet", function()
      local n = build.network(net, { "hid4", "cgnat" }, fake)
      local s = net.show(n)
      assert.matches("^network t has hidden nodes", s.problem)
      assert.equal("hidden", s.nodes[1].role)
      -- (pcall: has_error would strip the file:line being checked)
      assert.same({ false, badrole }, { pcall(net.show, n, { policy_dir = dir .. "badrole" }) })
      assert.same({ false, dir .. "badexit/exit.lua:4: policy exit: hook exit: returned elsewhere, not an NR of the network" },
        { pcall(net.show, n, { policy_dir = dir .. "badexit" }) })
    end)
  end)

  describe("graph", function()
    it("draws the public mesh, hidden-to-aggregator links and the exit in DOT", function()
      local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
      n = net.set_exit(n, "n2")
      n = net.add_access(n, "laptop", { via = "n1" })
      local dot = net.graph(n)
      local t = net.topology(n)
      assert.matches('^graph "zmesh%-t" {\n', dot)
      assert.matches('\n  "n1" %-%- "n2";\n', dot)
      assert.truthy(dot:find(string.format('"n3" -- "%s" [style=bold, label="primary"];', t.aggregators.n3[1]), 1, true))
      assert.truthy(dot:find(string.format('"n3" -- "%s" [style=dotted, label="backup"];', t.aggregators.n3[2]), 1, true))
      assert.truthy(dot:find('"n3" [label="n3\\n10.1.3.0/24\\nhidden", shape=ellipse, style=dashed];', 1, true))
      assert.truthy(dot:find('"access:laptop" -- "n1"', 1, true))
      assert.truthy(dot:find('"n2" -- internet [color=red, label="sole exit"];', 1, true))
      assert.matches("}\n$", dot)
    end)

    it("draws the exit's fallbacks, in order", function()
      local n = net.set_exit(build.network(net, { "pub4", "pub4", "pub4" }, fake), { "n3", "n1" })
      local dot = net.graph(n)
      assert.truthy(dot:find('"n3" -- internet [color=red, label="sole exit"];', 1, true))
      assert.truthy(dot:find('"n1" -- internet [color=red, style=dashed, label="fallback exit 1"];', 1, true))
      assert.falsy(dot:find('"n2" -- internet', 1, true))
    end)
  end)

  describe("render", function()
    it("refuses an unknown node", function()
      assert.has_error(function() net.render(build.network(net, { "pub4" }, fake), "n9") end,
        "node: 'n9' is not a node of network t")
    end)

    it("renders every field of the NR config", function()
      local n = build.network(net, { "pub4", "pub4" }, fake, { ipv6_range = "fd00:1::/48" })
      local c = net.render(n, "n2")
      local keys = {}
      for k in pairs(c) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "exit", "ip_range", "ipv6_range", "ipv6_subnet", "mesh_address", "net_id", "network",
        "node_id", "peers", "subnet", "wireguard_listen_port", "wireguard_private_key",
        "wireguard_public_key" }, keys)
      assert.equal(n.nodes[2].wireguard_private_key, c.wireguard_private_key)
    end)
  end)
end)
