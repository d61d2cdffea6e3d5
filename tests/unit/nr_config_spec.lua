-- NR config validation: every bad field gets one message naming it.
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
      "peers[1].allowed_ips: must be a list of prefixes")
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
      "peers[2].wireguard_public_key '" .. KEY_B .. "': is also peers[1]")
    fails(base({ peers = {
      { wireguard_public_key = KEY_B, allowed_ips = { "10.1.0.0/16" } },
      { wireguard_public_key = KEY_A, allowed_ips = { "10.1.3.0/24" } } } }),
      "peers[2].allowed_ips[1] '10.1.3.0/24': overlaps 10.1.0.0/16 of peers[1]")
    fails(base({ wireguard_public_key = KEY_B }), "peers[1].wireguard_public_key '" .. KEY_B .. "': is this NR's own key")
  end)
end)
