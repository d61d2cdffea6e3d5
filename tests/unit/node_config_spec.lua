local config = require "zmesh.node.config"

local function base()
  return { node_id = "n1", uplink = { nic = "eth0", addresses = { "203.0.113.11/24" },
    gateway = "203.0.113.254" } }
end

local function fails(mutate, pattern)
  local c = base()
  mutate(c)
  local ok, err = pcall(config.validate, c)
  assert.is_false(ok)
  assert.matches(pattern, err, 1, true)
end

describe("node config", function()
  it("fills in defaults", function()
    local c = config.validate(base())
    assert.equal("macvlan", c.uplink.mode)
    assert.same({ min = 51820, max = 52819 }, c.listen_ports)
    assert.equal("auto", c.wireguard_backend)
    assert.equal("/var/lib/zmesh", c.state_dir)
  end)

  it("names the field at fault", function()
    fails(function(c) c.node_id = "N 1" end, "node_id 'N 1'")
    fails(function(c) c.uplink.mode = "bridge" end, "mode 'bridge': must be one of macvlan, move")
    fails(function(c) c.uplink.addresses = { "203.0.113.300/24" } end, "uplink.addresses[1] '203.0.113.300/24'")
    fails(function(c) c.uplink.addresses = {} end, "uplink.addresses: at least one address is needed")
    fails(function(c) c.uplink.gateway = "2001:db8::1" end, "uplink.gateway '2001:db8::1': must be an IPv4 address")
    fails(function(c) c.uplink.nic = "a/b" end, "uplink.nic 'a/b': not an interface name")
    fails(function(c) c.listen_ports = { min = 2000, max = 1000 } end, "listen_ports '2000..1000': min is above max")
    fails(function(c) c.wireguard_backend = "magic" end, "wireguard_backend 'magic'")
    fails(function(c) c.force_role = "maybe" end, "force_role 'maybe'")
    fails(function(c) c.extra = 1 end, "unknown field 'extra'")
    fails(function(c) c.policy_dirs = { "/etc/zmesh/policies", 7 } end, "policy_dirs[2] 7: must be a directory path")
    fails(function(c) c.uplink.speed = 1 end, "uplink: unknown field 'speed'")
  end)

  it("reports a missing or broken file with its path", function()
    local ok, err = pcall(config.load, "/nonexistent/node.json")
    assert.is_false(ok)
    assert.matches("node config: /nonexistent/node.json", err, 1, true)
  end)
end)
