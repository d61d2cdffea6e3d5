-- Validation: each bad input gets one message naming the field and value,
-- and changes nothing.
local fake = require("fake_keys").install()
local net = require "zmesh.net"
local model = require "zmesh.net.model"
local validate = require "zmesh.net.validate"
local build = dofile("tests/fixtures/net/build.lua")

local function base()
  return build.network(net, { "pub4", "pub46", "hid4" }, fake, { ipv6_range = "fd00:1::/48" })
end

-- A copy of the base network with CHANGE applied.
local function broken(change)
  local n = model.copy(base())
  change(n)
  return n
end

describe("net validation", function()
  describe("of a new network", function()
    local cases = {
      { { name = "x", ip_range = "10.1.0.0/33" }, "ip_range: '10.1.0.0/33' is not a valid prefix (has an invalid prefix length)" },
      { { name = "x", ip_range = "10.1.0.300/16" }, "ip_range: '10.1.0.300/16' is not a valid prefix (is not an address/prefix (CIDR))" },
      { { name = "x", ip_range = "10.1.2.0/16" }, "ip_range: '10.1.2.0/16' is not a valid prefix (has host bits set (did you mean 10.1.0.0/16?))" },
      { { name = "x", ip_range = "100.64.0.0/16" }, "ip_range: '100.64.0.0/16' overlaps 100.64.0.0/10, which Zero-Mesh reserves for its own addresses" },
      { { name = "x", ip_range = "100.0.0.0/8" }, "ip_range: '100.0.0.0/8' overlaps 100.64.0.0/10, which Zero-Mesh reserves for its own addresses" },
      { { name = "x", ip_range = "8.8.0.0/16" }, "ip_range: '8.8.0.0/16' is not a private range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)" },
      { { name = "x", ip_range = "10.1.1.0/25" }, "ip_range: '10.1.1.0/25' is smaller than one /24, the subnet of one NR" },
      { { name = "x", ip_range = "fd00::/48" }, "ip_range: 'fd00::/48' must be an IPv4 prefix" },
      { { name = "x" }, "ip_range: (missing) must be a prefix such as 10.1.0.0/16" },
      { { name = "x", ip_range = "10.1.0.0/16", ipv6_range = "fe80::/64" }, "ipv6_range: 'fe80::/64' must be a unique local (fd00::/8) or global unicast prefix" },
      { { name = "x", ip_range = "10.1.0.0/16", ipv6_range = "fd00::/96" }, "ipv6_range: 'fd00::/96' is smaller than one /64, the IPv6 subnet of one NR" },
      { { name = "x", ip_range = "10.1.0.0/16", ipv6_range = "10.2.0.0/16" }, "ipv6_range: '10.2.0.0/16' must be an IPv6 prefix" },
      { { name = "bad name", ip_range = "10.1.0.0/16" }, "name: 'bad name' must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 64 characters)" },
      { { name = "x", ip_range = "10.1.0.0/16", net_id = "ABC" }, "net_id: 'ABC' must be 1 to 12 characters of [a-z0-9]" },
      { { name = "x", ip_range = "10.1.0.0/16", net_id = "abcdefghijklm" }, "net_id: 'abcdefghijklm' must be 1 to 12 characters of [a-z0-9]" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[2]:match("^[^:]+") .. " " .. tostring(c[1].ip_range) .. " " .. tostring(c[1].ipv6_range), function()
        assert.has_error(function() net.new(c[1]) end, c[2])
      end)
    end

    it("accepts the private ranges and a random net_id", function()
      for _, r in ipairs({ "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "10.1.1.0/24" }) do
        local n = net.new({ name = "x", ip_range = r })
        assert.matches("^[a-z0-9]+$", n.net_id)
        assert.equal(12, #n.net_id)
      end
    end)
  end)

  describe("of node facts", function()
    local function facts(change)
      local f = build.facts("n9", "pub4", fake)
      change(f)
      return f
    end
    local cases = {
      { function(f) f.node_id = "N9" end, "facts.node_id: 'N9' must match [a-z0-9][a-z0-9_-]* (at most 63 characters)" },
      { function(f) f.public_key = "nope" end, "facts.public_key: 'nope' is not a base64 X25519 public key" },
      { function(f) f.addresses = {} end, "facts.addresses: [] is empty: a node needs an uplink address" },
      { function(f) f.addresses = { "203.0.113.300/24" } end, "facts.addresses[1]: '203.0.113.300/24' is not an address/prefix such as 203.0.113.11/24" },
      { function(f) f.addresses = "203.0.113.3/24" end, "facts.addresses: '203.0.113.3/24' must be a list of strings" },
      { function(f) f.addresses = { "0.0.0.0/0" } end, "facts.addresses[1]: '0.0.0.0/0' is an unspecified address, not an uplink address" },
      { function(f) f.addresses = { "127.0.0.1/8" } end, "facts.addresses[1]: '127.0.0.1/8' is a loopback address, not an uplink address" },
      { function(f) f.addresses = { "224.0.0.1/4" } end, "facts.addresses[1]: '224.0.0.1/4' is a multicast address, not an uplink address" },
      { function(f) f.addresses = { "255.255.255.255/32" } end, "facts.addresses[1]: '255.255.255.255/32' is a reserved address, not an uplink address" },
      { function(f) f.addresses = { "203.0.113.3/24", "::1/128" } end, "facts.addresses[2]: '::1/128' is a loopback address, not an uplink address" },
      { function(f) f.public_endpoints = { "127.0.0.1" } end, "facts.public_endpoints[1]: '127.0.0.1' is a loopback address, not an address peers dial" },
      { function(f) f.public_endpoints = { "::" } end, "facts.public_endpoints[1]: '::' is an unspecified address, not an address peers dial" },
      { function(f) f.listen_ports = { min = 0, max = 10 } end, "facts.listen_ports.min: 0 must be an integer from 1 to 65535" },
      { function(f) f.listen_ports = { min = 10, max = 70000 } end, "facts.listen_ports.max: 70000 must be an integer from 1 to 65535" },
      { function(f) f.listen_ports = { min = 10, max = 5 } end, 'facts.listen_ports: {"max":5,"min":10} has max below min' },
      { function(f) f.listen_ports = nil end, 'facts.listen_ports: (missing) must be {"min": port, "max": port}' },
      { function(f) f.force_role = "both" end, 'facts.force_role: \'both\' must be "public" or "hidden"' },
      { function(f) f.public_endpoints = { "203.0.113.7:51820" } end, "facts.public_endpoints[1]: '203.0.113.7:51820' is not an IPv4 or IPv6 address" },
      { function(f) f.colour = "blue" end, "facts.colour: 'blue' is not a node fact" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[2]:match("^[^:]+"), function()
        local n = base()
        local before = net.encode(n)
        assert.has_error(function() net.add_node(n, facts(c[1])) end, c[2])
        assert.equal(before, net.encode(n)) -- changes nothing
      end)
    end
  end)

  describe("of a network file", function()
    local cases = {
      { function(n) n.nodes[2].subnet = "10.2.1.0/24" end, "nodes[n2].subnet: '10.2.1.0/24' is outside ip_range 10.1.0.0/16" },
      { function(n) n.nodes[2].subnet = n.nodes[1].subnet end, "nodes[n2].subnet: '10.1.1.0/24' overlaps nodes[n1].subnet" },
      { function(n) n.nodes[2].subnet = "10.1.9.0/23" end, "nodes[n2].subnet: '10.1.9.0/23' is not a valid prefix (has host bits set (did you mean 10.1.8.0/23?))" },
      { function(n) n.nodes[2].subnet = "10.1.8.0/23" end, "nodes[n2].subnet: '10.1.8.0/23' must be a /24" },
      { function(n) n.nodes[2].subnet = "10.1.9.0" end, "nodes[n2].subnet: '10.1.9.0' is not a valid prefix (is not an address/prefix (CIDR))" },
      { function(n) n.nodes[2].ipv6_subnet = "fd00:2::/64" end, "nodes[n2].ipv6_subnet: 'fd00:2::/64' is outside ipv6_range fd00:1::/48" },
      { function(n) n.nodes[2].ipv6_subnet = n.nodes[1].ipv6_subnet end, "nodes[n2].ipv6_subnet: 'fd00:1:0:1::/64' overlaps nodes[n1].ipv6_subnet" },
      { function(n) n.nodes[2].ipv6_subnet = nil end, "nodes[n2].ipv6_subnet: (missing) is required: the network has ipv6_range fd00:1::/48" },
      { function(n) n.nodes[2].node_id = "n1"; n.nodes[2].facts.node_id = "n1" end, "nodes[n1].node_id: 'n1' is a duplicate node" },
      { function(n) n.nodes[2].facts.public_key = n.nodes[1].facts.public_key; n.nodes[2].sealed_to = n.nodes[1].sealed_to end,
        function() return "nodes[n2].facts.public_key: (a key, not shown) is the key of node n1 too: a duplicate node" end },
      { function(n) n.nodes[2].wireguard_listen_port = 40000 end, "nodes[n2].wireguard_listen_port: 40000 is outside the node's listen_ports 51820-51829" },
      { function(n) n.nodes[2].wireguard_listen_port = "51820" end, "nodes[n2].wireguard_listen_port: '51820' must be an integer from 1 to 65535" },
      { function(n) n.nodes[2].wireguard_public_key = "abc=" end, "nodes[n2].wireguard_public_key: 'abc=' is not a base64 WireGuard public key" },
      { function(n) n.nodes[2].wireguard_public_key = n.nodes[1].wireguard_public_key end,
        "nodes[n2].wireguard_public_key: (a key, not shown) is also nodes[n1]'s: every NR needs its own key" },
      { function(n) n.nodes[2].wireguard_private_key = "c2VjcmV0" end, "nodes[n2].wireguard_private_key: (a string of 8 characters, not shown) is not a private key sealed to the node (base64, 108 characters)" },
      -- A plain private key put there by mistake: no part of it shown.
      { function(n) n.nodes[2].wireguard_private_key = "oDjniROFQy+BMbGw8Ed1WCRYa1dTXAqQYEDpm/EY2Xs=" end, "nodes[n2].wireguard_private_key: (a string of 44 characters, not shown) is not a private key sealed to the node (base64, 108 characters)" },
      { function(n) n.nodes[2].sealed_to = n.nodes[1].facts.public_key end,
        function() return "nodes[n2].sealed_to: (a key, not shown) is not the node's public_key: re-key with `zmesh net add-node --update`" end },
      { function(n) n.nodes[2].facts.node_id = "n7" end, "nodes[n2].facts.node_id: 'n7' differs from the node's id" },
      { function(n) n.exit = "n7" end, "exit: 'n7' is not a node of the network" },
      { function(n) n.format = 2 end, "format: 2 is not 1, the format this zmesh reads" },
      { function(n) n.nodes = "none" end, "nodes: 'none' must be a list" },
      -- An object where the list goes, as a file would have it: not "no nodes".
      { function(n) n.nodes = require("zmesh.json").decode("{}") end, "nodes: {} must be a list" },
      { function(n) n.ip_range = "10.1.0.0/23" end, "nodes: 3 NRs do not fit: ip_range 10.1.0.0/23 holds 2 /24 subnets" },
      { function(n) n.nodes[3].aggregators = "n1" end, "nodes[n3].aggregators: 'n1' must be a list of strings" },
      -- Objects where lists go, and lists where objects go, as a file would have them.
      { function(n) n.nodes[3].aggregators = require("zmesh.json").decode("{}") end,
        "nodes[n3].aggregators: {} must be a list of strings" },
      { function(n) n.nodes[2].facts.public_endpoints = require("zmesh.json").decode("{}") end,
        "nodes[n2].facts.public_endpoints: {} must be a list of strings" },
      { function(n) n.access = require("zmesh.json").decode("{}") end, "access: {} must be a list" },
      { function(n) local a = n.nodes[2].facts.addresses a[#a + 1] = a[1] end,
        function(n)
          local a = n.nodes[2].facts.addresses
          return string.format("nodes[n2].facts.addresses[%d]: '%s' is also addresses[1]", #a, a[1])
        end },
      { function(n) n.nodes[2].facts.listen_ports = require("zmesh.json").decode("[51820, 51829]") end,
        "nodes[n2].facts.listen_ports: [51820,51829] must be {\"min\": port, \"max\": port}" },
      { function(n) n.nodes[2].facts.listen_ports.step = 1 end,
        "nodes[n2].facts.listen_ports.step: 1 is not a field of listen_ports (min, max)" },
      { function(n) n.nodes[3].aggregators = { "n1", "n9" } end, "nodes[n3].aggregators[2]: 'n9' is not a node of the network" },
      { function(n) n.nodes[3].aggregators = { "n3" } end, "nodes[n3].aggregators[1]: 'n3' is the node itself" },
      { function(n) n.nodes[3].aggregators = { "n2", "n2" } end, "nodes[n3].aggregators[2]: 'n2' is listed twice" },
      { function(n) n.nodes[3].aggregators = { 7 } end, "nodes[n3].aggregators[1]: 7 must be a string" },
    }
    for i, c in ipairs(cases) do
      local title = type(c[2]) == "string" and c[2]:match("^[^:]+") .. ": " .. c[2]:match(": (.*)$"):sub(1, 50)
        or ("case " .. i)
      it("refuses " .. title, function()
        local n = broken(c[1])
        local msg = type(c[2]) == "function" and c[2](n) or c[2]
        assert.has_error(function() validate.network(n) end, msg)
        assert.has_error(function() net.render(n, "n1") end, msg)
        assert.has_error(function() net.add_node(n, (build.facts("n9", "pub4", fake))) end, msg)
      end)
    end

    it("refuses more NRs than the range holds, on add", function()
      local n = build.network(net, { "pub4", "pub4" }, fake, { ip_range = "10.1.0.0/23" })
      assert.has_error(function() net.add_node(n, (build.facts("n3", "pub4", fake))) end,
        "n3: ip_range 10.1.0.0/23 has no free /24 left")
    end)

    it("never gives out a /24 whose mesh address is not a host", function()
      -- 10.0.0.0/24 would be 100.64.0.0, the mesh /16's own address
      assert.has_error(function() build.network(net, { "pub4" }, fake, { ip_range = "10.0.0.0/24" }) end,
        "n1: ip_range 10.0.0.0/24 has no free /24 left")
      local n = build.network(net, { "pub4" }, fake, { ip_range = "10.0.0.0/23" })
      assert.equal("10.0.1.0/24", n.nodes[1].subnet)
      assert.has_error(function() validate.network(broken(function(b) b.ip_range = "10.0.0.0/16"; b.nodes[1].subnet = "10.0.0.0/24" end)) end,
        "nodes[n1].subnet: '10.0.0.0/24' cannot be used: its wg mesh address 100.64.0.0 is not a host address")
    end)

    it("accepts a stale record: a node that is no longer public is skipped", function()
      local n = base()
      n.nodes[3].aggregators = { "n1" }
      n.nodes[1].aggregators = { "n3" } -- a public node's record is not used
      local t = net.topology(n)
      assert.equal("n1", t.aggregators.n3[1])
      n.nodes[1].facts.force_role = "hidden"
      t = net.topology(n)
      assert.same({ "n2" }, t.aggregators.n3)
      assert.same({ "n2" }, t.aggregators.n1)
    end)

    it("refuses a field it does not know, in the network or in a node, naming it", function()
      assert.has_error(function() validate.network(broken(function(b) b.exits = "n1" end)) end,
        "exits: 'n1' is not a field of a network file")
      assert.has_error(function() validate.network(broken(function(b) b.nodes[2].subnet6 = "fd00::/64" end)) end,
        "nodes[n2].subnet6: 'fd00::/64' is not a field of a node")
    end)

    it("accepts the base network", function()
      assert.equal(3, #validate.network(base()).nodes)
      local s = net.validate(base())
      assert.equal(2, s.public)
      assert.equal(1, s.hidden)
    end)
  end)
end)
