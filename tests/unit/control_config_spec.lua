-- The node config's `control` section and the NR config's `generation`:
-- errors name the field; credential files must be 0600.
local config = require "zmesh.node.config"
local nr_config = require "zmesh.nr.config"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local function file(name, mode)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write("SU\n")
  f:close()
  assert(os.execute("chmod " .. mode .. " " .. path))
  return path
end
local SEED, OPEN = file("seed.nk", "600"), file("open.nk", "644")

local function node(control)
  return { node_id = "n1", uplink = { nic = "eth0", addresses = { "203.0.113.11/24" } }, control = control }
end

local function fails(control, msg)
  local ok, err = pcall(config.validate, node(control))
  assert.is_false(ok)
  assert.equal(msg, err)
end

describe("node config: control", function()
  it("takes URLs and the node's credentials, with defaults", function()
    local c = config.validate(node({ urls = { "nats://203.0.113.201:4222", "nats://[2001:db8::1]", "nats://nats.example" },
      nkey = SEED })).control
    assert.equal(3, #c.urls)
    assert.equal(SEED, c.nkey)
    assert.equal("zmesh", c.bucket)
    assert.equal(10, c.status_interval)
    assert.equal(0.25, c.retry_min)
    assert.equal(5, c.retry_max)
    local u = config.validate(node({ urls = { "nats://a" }, user = "n1", password_file = SEED })).control
    assert.equal("n1", u.user)
    assert.is_nil(config.validate(node(nil)).control)
  end)

  it("names the field at fault", function()
    fails({ urls = { "nats://a:4222", "tls://b" }, nkey = SEED }, "control.urls[2] 'tls://b': must be a nats://HOST[:PORT] URL")
    fails({ urls = { "nats://a:70000" }, nkey = SEED }, "control.urls[1] 'nats://a:70000': port must be 1..65535")
    fails({ urls = { "nats://n1:pw@a" }, nkey = SEED },
      "control.urls[1] 'nats://(credentials, not shown)@a': holds credentials: give them in a 0600 file (control.nkey, control.creds or control.password_file)")
    fails({ urls = {}, nkey = SEED }, "control.urls: must list 1..16 nats:// URLs")
    fails({ urls = "nats://a", nkey = SEED }, "control.urls 'nats://a': must be a list ([...]) of nats:// URLs")
    fails({ urls = { "nats://a" }, nkey = OPEN }, "control.nkey '" .. OPEN .. "': has mode 644: credentials must be 0600")
    fails({ urls = { "nats://a" }, nkey = "relative.nk" }, "control.nkey 'relative.nk': must be the absolute path of a file")
    fails({ urls = { "nats://a" } }, "control: needs the node's credentials: one of nkey, creds, or user and password_file")
    fails({ urls = { "nats://a" }, nkey = SEED, creds = SEED },
      "control: needs the node's credentials: one of nkey, creds, or user and password_file")
    fails({ urls = { "nats://a" }, user = "n1" }, "control.password_file: missing (control.user needs it)")
    fails({ urls = { "nats://a" }, nkey = SEED, bucket = "z.m" }, "control.bucket 'z.m': must be 1..48 of A-Z a-z 0-9 _ -")
    fails({ urls = { "nats://a" }, nkey = SEED, status_interval = 0 }, "control.status_interval 0: must be 0.5..3600 seconds")
    fails({ urls = { "nats://a" }, nkey = SEED, nats = 1 }, "control: unknown field 'nats'")
  end)
end)

describe("NR config: generation", function()
  local base = { net_id = "abc", ip_range = "10.1.0.0/16", subnet = "10.1.1.0/24",
    wireguard_private_key = string.rep("A", 80), wireguard_listen_port = 51820, peers = {} }
  it("is an optional whole number", function()
    base.generation = 7
    assert.equal(7, nr_config.validate(base).generation)
    base.generation = nil
    assert.is_nil(nr_config.validate(base).generation)
    base.generation = 1.5
    local ok, err = pcall(nr_config.validate, base)
    assert.is_false(ok)
    assert.equal("generation 1.5: must be an integer", err)
    base.generation = -1
    ok, err = pcall(nr_config.validate, base)
    assert.matches("^generation %-1: must be 0%.%.", err)
  end)
end)
