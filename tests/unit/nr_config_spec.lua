-- NR config validation: every bad field gets one message naming it.
local fake_keys = require "fake_keys"
local ip = require "zmesh.ip"
local json = require "zmesh.json"
local nr_config = require "zmesh.nr.config"

local KEY_A = string.rep("A", 43) .. "="
local KEY_B = string.rep("B", 42) .. "A="

local function base(over)
  local c = {
    net_id = "abc", ip_range = "10.1.0.0/16", subnet = "10.1.1.0/24",
    wireguard_private_key = "c2VhbGVk", wireguard_listen_port = 51820,
    peers = { { wireguard_public_key = KEY_B, allowed_ips = { "10.1.2.0/24" },
      endpoint = "203.0.113.12:51820" } },
  }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function fails(c, pattern)
  local ok, err = pcall(nr_config.validate, c)
  assert.is_false(ok, "expected a validation error")
  assert.matches(pattern, err, 1, true)
end

describe("NR config", function()
  it("accepts a good config and derives the mesh address", function()
    local c = nr_config.validate(base())
    assert.equal("100.64.1.1/16", c.mesh_address)
    assert.equal("local", c.exit)
    assert.equal(KEY_B, c.peers[1].public_key)
  end)

  it("normalises endpoints", function()
    local c = nr_config.validate(base({ peers = { { wireguard_public_key = KEY_B,
      allowed_ips = { "10.1.2.0/24" }, endpoint = "[2001:DB8:0::12]:51820" } } }))
    assert.equal("[2001:db8::12]:51820", c.peers[1].endpoint)
  end)

  local cases = {
    { "missing net_id", { net_id = false }, "net_id: missing" },
    { "empty net_id", { net_id = "" }, "net_id '': must be a non-empty string" },
    { "bad net_id", { net_id = "Bad-Id" }, "net_id 'Bad-Id': must be 1..12 of a-z 0-9" },
    { "long net_id", { net_id = "abcdefghijklm" }, "net_id 'abcdefghijklm'" },
    { "bad range", { ip_range = "10.1.0.0/33" }, "ip_range '10.1.0.0/33': has an invalid prefix length" },
    { "host bits", { ip_range = "10.1.2.0/16" }, "ip_range '10.1.2.0/16': has host bits set" },
    { "CGNAT range", { ip_range = "100.64.0.0/16", subnet = "100.64.1.0/24" },
      "ip_range '100.64.0.0/16': overlaps 100.64.0.0/10" },
    { "public range", { ip_range = "8.8.0.0/16", subnet = "8.8.1.0/24" },
      "ip_range '8.8.0.0/16': must be a private (RFC 1918) range" },
    { "subnet outside", { subnet = "10.2.1.0/24" }, "subnet '10.2.1.0/24': is not inside ip_range 10.1.0.0/16" },
    { "subnet size", { subnet = "10.1.0.0/23" }, "subnet '10.1.0.0/23': must be a /24" },
    { "port", { wireguard_listen_port = 70000 }, "wireguard_listen_port 70000: must be 1..65535" },
    { "port type", { wireguard_listen_port = "x" }, "wireguard_listen_port 'x': must be an integer" },
    { "exit", { exit = "nowhere" }, "exit 'nowhere': must be one of local, mesh" },
    { "exit mesh without default", { exit = "mesh" }, "exit 'mesh': no peer carries 0.0.0.0/0" },
    { "unknown field", { colour = "blue" }, "unknown field 'colour'" },
    { "network name with a control character", { network = "demo\nx" },
      "network 'demo\\nx': must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 64 characters)" },
    { "network name too long", { network = string.rep("n", 65) }, "(at most 64 characters)" },
    { "mesh address", { mesh_address = "100.64.9.9/16" }, "mesh_address '100.64.9.9/16': must be 100.64.1.1/16" },
    { "private key", { wireguard_private_key = "not base64!" }, "wireguard_private_key: must be a sealed key in base64" },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[1], function()
      local over = case[2]
      if over.net_id == false then over = { net_id = nil } end
      local c = base(over)
      if case[1] == "missing net_id" then c.net_id = nil end
      fails(c, case[3])
    end)
  end

  it("refuses bad peers, naming the peer and field", function()
    fails(base({ peers = { { wireguard_public_key = "short", allowed_ips = { "10.1.2.0/24" } } } }),
      "peers[1].wireguard_public_key 'short': not a WireGuard key")
    fails(base({ peers = { { wireguard_public_key = KEY_B, allowed_ips = "10.1.2.0/24" } } }),
      "peers[1].allowed_ips '10.1.2.0/24': must be a list ([...]) of prefixes")
    fails(base({ peers = { { wireguard_public_key = KEY_B, allowed_ips = { "10.1.2.1/24" } } } }),
      "peers[1].allowed_ips[1] '10.1.2.1/24': has host bits set")
    fails(base({ peers = { { wireguard_public_key = KEY_B, allowed_ips = { "10.1.2.0/24" },
      endpoint = "203.0.113.1" } } }), "peers[1].endpoint '203.0.113.1': must be a.b.c.d:port")
    fails(base({ peers = { { wireguard_public_key = KEY_B, allowed_ips = { "10.1.2.0/24" },
      endpoint = "203.0.113.1:0" } } }), "port must be 1..65535")
    fails(base({ peers = { { wireguard_public_key = KEY_B, allowed_ips = { "10.1.2.0/24" },
      persistent_keepalive = -1 } } }), "persistent_keepalive -1: must be 0..65535")
    fails(base({ peers = {
      { wireguard_public_key = KEY_B, allowed_ips = { "10.1.2.0/24" } },
      { wireguard_public_key = KEY_B, allowed_ips = { "10.1.3.0/24" } } } }),
      "peers[2].wireguard_public_key (a key, not shown): is also peers[1]")
    fails(base({ peers = {
      { wireguard_public_key = KEY_B, allowed_ips = { "10.1.0.0/16" } },
      { wireguard_public_key = KEY_A, allowed_ips = { "10.1.3.0/24" } } } }),
      "peers[2].allowed_ips[1] '10.1.3.0/24': overlaps 10.1.0.0/16 of peers[1]")
    fails(base({ wireguard_public_key = KEY_B }), "peers[1].wireguard_public_key (a key, not shown): is this NR's own key")
  end)

  -- A peer of the base config with OVER's fields.
  local function peer(over)
    local p = { wireguard_public_key = KEY_B, allowed_ips = { "10.1.2.0/24" } }
    for k, v in pairs(over or {}) do p[k] = v end
    return p
  end

  -- The base config as JSON text with TEXT spliced in, decoded as the
  -- node reads it.
  local function decoded(fields)
    local c = json.decode(json.encode(base()))
    for k, v in pairs(json.decode("{" .. fields .. "}")) do c[k] = v end
    return c
  end

  it("refuses an object where a list belongs, empty or not", function()
    fails(decoded('"peers": {}'), "peers {}: must be a list ([...])")
    fails(decoded([["peers": {"a": {"wireguard_public_key": "x"}}]]), "peers {")
    local c = decoded("")
    c.peers[1].allowed_ips = json.decode("{}")
    fails(c, "peers[1].allowed_ips {}: must be a list ([...]) of prefixes")
    -- An empty list stays a list: a standby peer carries no routes.
    c = decoded('"peers": []')
    assert.same({}, nr_config.validate(c).peers)
    c = decoded("")
    c.peers[1].allowed_ips = json.decode("[]")
    assert.same({}, nr_config.validate(c).peers[1].allowed_ips)
    fails(decoded('"peers": [null]'), "peers[1] null: must be an object")
  end)

  it("refuses huge, infinite and null numbers naming the field", function()
    fails(decoded('"wireguard_listen_port": 1e20'), "wireguard_listen_port 1e+20: must be 1..65535")
    fails(decoded('"wireguard_listen_port": 9223372036854775808'), "wireguard_listen_port 9.2233720368548e+18: must be 1..65535")
    fails(decoded('"wireguard_listen_port": Infinity'), "wireguard_listen_port Infinity: must be 1..65535")
    fails(decoded('"wireguard_listen_port": null'), "wireguard_listen_port null: must be an integer")
    fails(base({ peers = { peer({ persistent_keepalive = math.huge }) } }),
      "peers[1].persistent_keepalive Infinity: must be 0..65535")
    fails(base({ peers = { peer({ persistent_keepalive = 2 ^ 63 }) } }),
      "peers[1].persistent_keepalive 9.2233720368548e+18: must be 0..65535")
    fails(decoded('"network": null'), "network null: must be a non-empty string")
    fails(decoded('"exit": null'), "exit null: must be one of local, mesh")
  end)

  it("checks IPv6 prefixes: the range sane, the subnet a unicast /64 inside it", function()
    local v6 = { ipv6_range = "fd00:1::/48", ipv6_subnet = "fd00:1:0:1::/64" }
    local c = nr_config.validate(base(v6))
    assert.equal("fd00:1:0:1::/64", c.ipv6_subnet)
    assert.equal("2001:db8:0:1::/64", nr_config.validate(base({ ipv6_subnet = "2001:db8:0:1::/64" })).ipv6_subnet)
    for _, case in ipairs({
      { { ipv6_subnet = "::1/128" }, "ipv6_subnet '::1/128': must be a /64" },
      { { ipv6_subnet = "fd00:1::/48" }, "ipv6_subnet 'fd00:1::/48': must be a /64" },
      { { ipv6_subnet = "fe80::/64" }, "ipv6_subnet 'fe80::/64': is link-local space" },
      { { ipv6_subnet = "ff02::/64" }, "ipv6_subnet 'ff02::/64': is multicast space" },
      { { ipv6_subnet = "::/64" }, "ipv6_subnet '::/64': is reserved space" },
      { { ipv6_subnet = "10.1.1.0/24" }, "ipv6_subnet '10.1.1.0/24': must be an IPv6 prefix" },
      { { ipv6_range = "fd00:1::/48", ipv6_subnet = "fd00:2::/64" },
        "ipv6_subnet 'fd00:2::/64': is not inside ipv6_range fd00:1::/48" },
      { { ipv6_range = "::/0" }, "ipv6_range '::/0': must be a unique local (fc00::/7) or global unicast prefix" },
      { { ipv6_range = "fe80::/10" }, "ipv6_range 'fe80::/10': must be a unique local" },
      { { ipv6_range = "2000::/3" }, "ipv6_range '2000::/3': must be a /8 to /64" },
      { { ipv6_range = "fd00:1::/96" }, "ipv6_range 'fd00:1::/96': must be a /8 to /64" },
      { { ipv6_range = json.null }, "ipv6_range null: must be a string" },
    }) do
      fails(base(case[1]), case[2])
    end
  end)

  it("refuses a sealed key that is not canonical base64, before C sees it", function()
    for _, bad in ipairs({ "c2VhbGVkAA=", "c2VhbGU", "c2VhbGV=", "c2VhbB==", "c2V=bGU=" }) do
      fails(base({ wireguard_private_key = bad }), "wireguard_private_key: must be a sealed key in base64 (")
    end
    assert.equal("c2VhbGU=", nr_config.validate(base({ wireguard_private_key = "c2VhbGU=" })).sealed_private_key)
  end)

  it("checks peers[].node_id like a node id", function()
    assert.equal("n2", nr_config.validate(base({ peers = { peer({ node_id = "n2" }) } })).peers[1].node_id)
    fails(base({ peers = { peer({ node_id = 42 }) } }), "peers[1].node_id 42: must be 1..63 of a-z 0-9")
    fails(base({ peers = { peer({ node_id = { "x" } }) } }), 'peers[1].node_id ["x"]: must be 1..63')
    fails(base({ peers = { peer({ node_id = ("n"):rep(1 << 20) }) } }), "(1048576 bytes): must be 1..63")
    fails(base({ node_id = "N 1" }), "node_id 'N 1': must be 1..63")
  end)

  it("refuses peers that carry the NR's own prefixes", function()
    local v6 = { ipv6_range = "fd00:1::/48", ipv6_subnet = "fd00:1:0:1::/64" }
    for _, case in ipairs({
      { "10.1.1.0/24", "overlaps this NR's own subnet 10.1.1.0/24" },
      { "10.1.1.128/25", "overlaps this NR's own subnet 10.1.1.0/24" },
      { "10.1.0.0/20", "overlaps this NR's own subnet 10.1.1.0/24" },
      { "100.64.1.1/32", "overlaps this NR's own mesh address 100.64.1.1/32" },
      { "fd00:1:0:1::5/128", "overlaps this NR's own IPv6 subnet fd00:1:0:1::/64" },
    }) do
      local c = base(v6)
      c.peers[1].allowed_ips = { "10.1.2.0/24", case[1] }
      fails(c, "peers[1].allowed_ips[2] '" .. case[1] .. "': " .. case[2])
    end
    -- By design: a hidden NR's primary carries the whole network, the
    -- sole exit's peer everything.
    local c = base(v6)
    c.peers[1].allowed_ips = { "10.1.0.0/16", "100.64.0.0/16", "fd00:1::/48" }
    assert.equal(3, #nr_config.validate(c).peers[1].allowed_ips)
    c.peers[1].allowed_ips = { "0.0.0.0/0", "::/0" }
    c.exit = "mesh"
    assert.equal("mesh", nr_config.validate(c).exit)
  end)

  it("refuses endpoints no peer can have", function()
    for _, e in ipairs({ "0.0.0.0:51820", "[::]:51820", "127.0.0.1:51820", "[::1]:51820",
        "224.0.0.1:51820", "[ff02::1]:51820", "255.255.255.255:51820" }) do
      fails(base({ peers = { peer({ endpoint = e }) } }), "peers[1].endpoint '" .. e .. "': is ")
    end
  end)

  it("never echoes a key, and cuts and escapes long or odd values", function()
    fails(base({ net_id = KEY_A }), "net_id (a key, not shown): must be")
    fails(base({ peers = { peer({ endpoint = KEY_A }) } }), "peers[1].endpoint (a key, not shown): must be")
    fails(base({ peers = { peer({ subnet = KEY_A }) } }), "peers[1].subnet (a key, not shown): is not")
    local ok, err = pcall(nr_config.validate, base({ net_id = ("x"):rep(1 << 20) .. "\n" }))
    assert.is_false(ok)
    assert.is_true(#err < 200, err)
    assert.matches("(1048577 bytes)", err, 1, true)
    fails(base({ ["bad\nfield"] = 1 }), "unknown field 'bad\\nfield'")
  end)

  -- N peers, each carrying one /32 of 10.2.0.0/16, with distinct keys.
  local function many(n)
    local peers = {}
    for i = 1, n do
      peers[i] = { wireguard_public_key = fake_keys.b64encode(string.pack(">I4", i) .. ("k"):rep(28)),
        allowed_ips = { string.format("10.2.%d.%d/32", i // 256, i % 256) } }
    end
    return peers
  end

  it("checks 8000 /32 peers without comparing every pair", function()
    local n = 8000
    local calls, contains = 0, ip.contains
    ip.contains = function(a, b) calls = calls + 1 return contains(a, b) end
    local ok, c = pcall(nr_config.validate, base({ peers = many(n) }))
    ip.contains = contains
    assert.is_true(ok, c)
    assert.equal(n, #c.peers)
    -- A few per prefix (own prefixes, the sweep); all pairs would be 32 million.
    assert.is_true(calls < 10 * n, "ip.contains called " .. calls .. " times")
  end)

  it("finds an overlap between far-apart entries, naming both", function()
    local peers = many(8000)
    peers[8000].allowed_ips = { "10.2.0.0/24", "10.3.0.0/16" }
    peers[1].allowed_ips = { "10.9.0.0/16" }
    fails(base({ peers = peers }), "peers[8000].allowed_ips[1] '10.2.0.0/24': overlaps 10.2.0.2/32 of peers[2]")
    peers = many(8000)
    peers[1].allowed_ips = { "10.2.31.0/24" }
    fails(base({ peers = peers }), "peers[7936].allowed_ips[1] '10.2.31.0/32': overlaps 10.2.31.0/24 of peers[1]")
    peers = many(3)
    peers[3].allowed_ips = { "10.1.2.0/24", "10.2.0.0/16" }
    peers[1].allowed_ips = { "10.1.0.0/16" }
    fails(base({ peers = peers }), "peers[3].allowed_ips[1] '10.1.2.0/24': overlaps 10.1.0.0/16 of peers[1]")
  end)
end)
