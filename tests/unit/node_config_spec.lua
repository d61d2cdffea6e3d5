local config = require "zmesh.node.config"
local json = require "zmesh.json"

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

  it("names nested fields by their full path", function()
    fails(function(c) c.uplink.nic = nil end, "uplink.nic: missing")
    fails(function(c) c.uplink.mode = "bridge" end, "uplink.mode 'bridge': must be one of macvlan, move")
    fails(function(c) c.uplink.addresses = nil end, "uplink.addresses: missing")
    fails(function(c) c.listen_ports = { max = 2000 } end, "listen_ports.min: missing")
    fails(function(c) c.listen_ports = { min = 1000, max = 70000 } end, "listen_ports.max 70000: must be 1..65535")
    fails(function(c) c.listen_ports = { min = 1000, max = 2000, step = 1 } end, "listen_ports: unknown field 'step'")
    fails(function(c) c.listen_ports = { min = 1e20, max = 2000 } end, "listen_ports.min 1e+20: must be 1..65535")
  end)

  it("tells arrays from objects in decoded JSON", function()
    local function decoded(mutate)
      local c = json.decode(json.encode(base()))
      mutate(c)
      local ok, err = pcall(config.validate, c)
      assert.is_false(ok)
      return err
    end
    assert.equal("uplink.addresses {}: must be a list ([...]) of addresses",
      decoded(function(c) c.uplink.addresses = json.decode("{}") end))
    assert.equal("uplink []: must be an object ({...})",
      decoded(function(c) c.uplink = json.decode("[]") end))
    assert.equal('listen_ports [1000,2000]: must be an object ({...})',
      decoded(function(c) c.listen_ports = json.decode("[1000, 2000]") end))
    assert.equal("public_endpoints {}: must be a list ([...]) of addresses",
      decoded(function(c) c.public_endpoints = json.decode("{}") end))
    assert.equal("policy_dirs null: must be a list ([...]) of directories",
      decoded(function(c) c.policy_dirs = json.null end))
    assert.equal("uplink.gateway null: not an IPv4 or IPv6 address",
      decoded(function(c) c.uplink.gateway = json.null end))
    assert.equal("node config must be a JSON object", decoded(function(c) c[1] = 1 end))
  end)

  it("refuses a directory or an endless file as the config", function()
    local ok, err = pcall(config.load, "/tmp")
    assert.is_false(ok)
    assert.equal("node config: /tmp: is a directory, not a file", err)
    ok, err = pcall(config.load, "/dev/zero")
    assert.is_false(ok)
    assert.equal("node config: /dev/zero: larger than 16 MiB, the limit for JSON input", err)
  end)
end)
