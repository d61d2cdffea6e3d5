-- zmesh.core as a module: its shape, caller mistakes raise naming the
-- argument, system failures return nil, "ENAME: message", "ENAME".
local core = require "zmesh.core"

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected a raise")
  assert.matches(pattern, err, 1, true)
end

local function fails_with(ename, pattern, ...)
  local n = select("#", ...)
  local a, msg, name = ...
  assert.is_nil(a)
  assert.equal(3, n)
  assert.equal(ename, name)
  assert.matches("^" .. ename .. ": ", msg)
  if pattern then assert.matches(pattern, msg, 1, true) end
end

describe("zmesh.core", function()
  it("has one sub-table per area and writes no globals", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    package.loaded["zmesh.core"] = nil
    local fresh = require "zmesh.core"
    for k in pairs(_G) do assert.is_true(before[k], "new global " .. k) end
    for _, area in ipairs({ "netns", "link", "addr", "route", "sysctl", "key", "wg", "fs", "nft" }) do
      assert.is_table(fresh[area], area)
    end
    assert.is_string(fresh.version)
  end)

  describe("netns", function()
    it("raises on bad names", function()
      raises("bad argument #1 to 'create' (invalid namespace name 'a/b')",
        function() return core.netns.create("a/b") end)
      raises("invalid namespace name '..'", core.netns.delete, "..")
      raises("invalid namespace name ''", core.netns.exists, "")
      raises("invalid namespace name", core.netns.create, string.rep("x", 65))
      raises("string expected", core.netns.create, nil)
      raises("grace must be", core.netns.delete, "x", -1)
    end)
    it("returns ENOENT for a missing namespace", function()
      fails_with("ENOENT", "namespace 'zmesh-no-such-ns' does not exist",
        core.netns.delete("zmesh-no-such-ns"))
      fails_with("ENOENT", nil, core.netns.open("zmesh-no-such-ns"))
      assert.is_false(core.netns.exists("zmesh-no-such-ns"))
    end)
    it("opens the caller's own namespace as a closable handle", function()
      local h = assert(core.netns.open())
      assert.is_nil(h:name())
      assert.matches("zmesh.netns", tostring(h))
      h:close()
      h:close()
      assert.matches("closed", tostring(h))
      raises("namespace handle is closed", h.name, h)
      raises("ns: namespace handle is closed", core.link.dump, h)
    end)
  end)

  describe("link", function()
    it("checks option tables", function()
      raises("unknown field 'colour'", core.link.veth, { name = "a", peer = "b", colour = 1 })
      raises("field 'name': required string missing", core.link.veth, { peer = "b" })
      raises("field 'name': invalid interface name 'abcdefghijklmnop'", core.link.bridge,
        { name = "abcdefghijklmnop" })
      raises("field 'mtu': 10 out of range 68..65535", core.link.bridge, { name = "b", mtu = 10 })
      raises("field 'mode': unknown macvlan mode 'wild'", core.link.macvlan,
        { name = "m", parent = "eth0", mode = "wild" })
      raises("field 'master': link name or false expected", core.link.set, { name = "x", master = true })
      raises("field 'ns': invalid namespace name 'a b'", core.link.delete, { ns = "a b", name = "x" })
      raises("field 'peer_ns': namespace name or handle expected", core.link.veth,
        { name = "a", peer = "b", peer_ns = 5 })
      raises("table expected", core.link.set, "eth0")
    end)
    it("returns ENOENT for a missing namespace", function()
      fails_with("ENOENT", "does not exist", core.link.bridge { ns = "zmesh-no-such-ns", name = "b" })
      fails_with("ENOENT", nil, core.link.dump("zmesh-no-such-ns"))
    end)
  end)

  describe("addr and route", function()
    it("raise on malformed addresses naming the field", function()
      raises("field 'addr': '10.0.0.1/33' has an invalid prefix length", core.addr.add,
        { dev = "lo", addr = "10.0.0.1/33" })
      raises("field 'addr': 'nonsense' is not an IPv4 or IPv6 address", core.addr.add,
        { dev = "lo", addr = "nonsense" })
      raises("field 'dst'", core.route.add, { dst = "10.0.0.0/40", dev = "lo" })
      raises("field 'via': '10.0.0' is not an IPv4 or IPv6 address", core.route.add,
        { family = 4, dst = "default", via = "10.0.0" })
      raises("a route needs field 'via' or 'dev'", core.route.add, { family = 4, dst = "default" })
      raises("field 'family': a default route needs family 4 or 6", core.route.add,
        { dst = "default", dev = "lo" })
      raises("field 'dst': '10.0.0.0/8' is not an IPv6 prefix", core.route.add,
        { family = 6, dst = "10.0.0.0/8", dev = "lo" })
      raises("field 'family': 4 or 6 expected", core.route.dump, nil, { family = 5 })
    end)
  end)

  describe("sysctl", function()
    it("only takes net.* keys", function()
      raises("'kernel.hostname' is not a net.* sysctl key", core.sysctl.set, nil, "kernel.hostname", "x")
      raises("not a net.* sysctl key", core.sysctl.get, nil, "net.ipv4/../../kernel/hostname")
      raises("string or integer expected", core.sysctl.set, nil, "net.ipv4.ip_forward", {})
    end)
  end)

  describe("key", function()
    it("never shows a private key by accident", function()
      local k = core.key.generate()
      local text = tostring(k)
      assert.matches("^zmesh.privkey %(public ", text)
      assert.not_matches(k:export(), text, 1, true)
      raises("malformed private key", core.key.private, "short")
      local ok, err = pcall(core.key.private, k:export():sub(1, 43) .. "#")
      assert.is_false(ok)
      assert.not_matches(k:export():sub(1, 40), err, 1, true)
    end)
    it("raises on malformed public keys, naming the value", function()
      local k = core.key.generate()
      raises("malformed public key 'nope'", k.seal, k, "nope")
      assert.is_false(core.key.valid_public("AAAA"))
      assert.is_false(core.key.valid_public(string.rep("A", 44)))
      assert.is_true(core.key.valid_public(k:public()))
    end)
  end)

  describe("wg", function()
    it("checks peers field by field", function()
      local pk = core.key.generate():public()
      raises("peers[1].public_key: required", core.wg.set, { name = "w", peers = { {} } })
      raises("peers[2].endpoint: '1.2.3.4' is not an endpoint", core.wg.set,
        { name = "w", peers = { { public_key = pk }, { public_key = pk, endpoint = "1.2.3.4" } } })
      raises("peers[1].allowed_ips: entry 2: '10.0.0.0/99' is not a prefix", core.wg.set,
        { name = "w", peers = { { public_key = pk, allowed_ips = { "10.0.0.0/8", "10.0.0.0/99" } } } })
      raises("peers[1].persistent_keepalive: integer 0..65535 expected", core.wg.set,
        { name = "w", peers = { { public_key = pk, persistent_keepalive = 70000 } } })
      raises("peers[1].bogus: unknown field", core.wg.set,
        { name = "w", peers = { { public_key = pk, bogus = 1 } } })
      raises("field 'listen_port': 65536 out of range", core.wg.set, { name = "w", listen_port = 65536 })
      raises("field 'private_key': private key (core.key) or false expected", core.wg.set,
        { name = "w", private_key = "secret-as-text" })
      raises("field 'backend': 'fast' is not auto, kernel or userspace", core.wg.create,
        { name = "w", backend = "fast" })
    end)
  end)

  describe("fs", function()
    it("returns errno triples", function()
      fails_with("ENOENT", "cannot list /nonexistent-zmesh", core.fs.list("/nonexistent-zmesh"))
      raises("mode must be 0..07777", core.fs.mkdir, "/tmp/x", -1)
    end)
  end)
end)
