-- zmesh.check: one message per bad input, naming the field by its full
-- path and showing the value safely (cut, escaped, keys never shown).
local check = require "zmesh.check"
local json = require "zmesh.json"

local KEY = string.rep("A", 42) .. "E="

local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("zmesh.check", function()
  describe("show", function()
    it("cuts long values and says how long they were", function()
      local s = check.show(string.rep("x", 1 << 20))
      assert.equal("'" .. string.rep("x", 64) .. "…' (1048576 bytes)", s)
      local msg = err_of(check.oneof, { net_id = string.rep("y", 1 << 20) .. "\n" }, "net_id", { "abc" })
      assert.is_true(#msg < 200, msg)
    end)

    it("cuts UTF-8 text at a character boundary", function()
      local s = check.show(string.rep("é", 100))
      assert.equal("'" .. string.rep("é", 64) .. "…' (200 bytes)", s)
    end)

    it("escapes control characters, backslashes and bytes that are not UTF-8", function()
      assert.equal([['a\nb\tc\x1b[2J\x7f\\']], check.show("a\nb\tc\27[2J\127\\"))
      assert.equal([['\xff\xfe']], check.show("\255\254"))
    end)

    it("shows JSON null as null, numbers as JSON writes them, tables as short JSON", function()
      assert.equal("null", check.show(json.null))
      assert.equal("Infinity", check.show(math.huge))
      assert.equal("-Infinity", check.show(-math.huge))
      assert.equal("NaN", check.show(0 / 0))
      assert.equal("1e+20", check.show(1e20))
      assert.equal('{"a":1}', check.show(json.decode('{"a": 1}')))
      assert.equal("{}", check.show(json.decode("{}")))
      assert.matches("^%[1,1,1,.*… %(%d+ bytes of JSON%)$", check.show(json.decode("[" .. ("1,"):rep(100) .. "1]")))
    end)

    it("never shows a value shaped like a WireGuard key", function()
      assert.equal("(a key, not shown)", check.show(KEY))
      assert.equal("(a value holding a key, not shown)", check.show(" " .. KEY .. "\n"))
      assert.equal("(a value holding a key, not shown)", check.show({ k = KEY }))
      -- A longer base64 run (a sealed box) is not a key; it is only cut.
      assert.matches("^'AAAA", check.show(string.rep("A", 107) .. "="))
      local msg = err_of(check.fail, "peers[1].endpoint", KEY, "must be host:port")
      assert.equal("peers[1].endpoint (a key, not shown): must be host:port", msg)
      msg = err_of(check.known_fields, { [KEY] = 1 }, { "a" })
      assert.equal("unknown field (a key, not shown)", msg)
    end)
  end)

  describe("paths", function()
    it("names fields under the path given with check.at", function()
      local up = check.at({ mode = "x" }, "uplink")
      assert.equal("uplink.nic: missing", err_of(check.string, up, "nic"))
      assert.equal("uplink.mode 'x': must be one of macvlan, move",
        err_of(check.oneof, up, "mode", { "macvlan", "move" }))
      assert.equal("uplink: unknown field 'mode'", err_of(check.known_fields, up, { "nic" }))
      assert.equal("peers[3].persistent_keepalive: missing",
        err_of(check.integer, check.at({}, check.path("peers", 3)), "persistent_keepalive", 0, 65535))
      assert.equal("peers[3].allowed_ips[2]", check.path(check.name(check.at({}, "peers[3]"), "allowed_ips"), 2))
      assert.equal("subnet", check.name({}, "subnet"))
    end)
  end)

  describe("integer", function()
    it("refuses huge, infinite and NaN numbers with the field's name", function()
      for _, case in ipairs({
        { 1e20, "port 1e+20: must be 1..65535" },
        { 2 ^ 63, "port 9.2233720368548e+18: must be 1..65535" },
        { math.huge, "port Infinity: must be 1..65535" },
        { -math.huge, "port -Infinity: must be 1..65535" },
        { 0 / 0, "port NaN: must be an integer" },
        { 1.5, "port 1.5: must be an integer" },
        { json.null, "port null: must be an integer" },
        { "80", "port '80': must be an integer" },
      }) do
        assert.equal(case[2], err_of(check.integer, { port = case[1] }, "port", 1, 65535))
      end
      assert.equal(51820, check.integer({ port = 51820.0 }, "port", 1, 65535))
      assert.equal("integer", math.type(check.integer({ port = 51820.0 }, "port", 1, 65535)))
      -- Decoded from JSON text as a user would write it.
      local c = json.decode('{"port": Infinity, "big": 1e20, "huge": 9223372036854775808}')
      assert.matches("port Infinity", err_of(check.integer, c, "port", 1, 65535), 1, true)
      assert.matches("big 1e+20", err_of(check.integer, c, "big", 1, 65535), 1, true)
      assert.matches("must be 1..65535", err_of(check.integer, c, "huge", 1, 65535), 1, true)
    end)

    it("treats null like a wrong type, also where the field is optional", function()
      assert.equal("exit null: must be one of local, mesh",
        err_of(check.oneof, { exit = json.null }, "exit", { "local", "mesh" }, true))
      assert.equal("network null: must be a non-empty string",
        err_of(check.string, { network = json.null }, "network", true))
    end)
  end)

  describe("arrays and objects", function()
    it("tells decoded arrays from objects, empty ones too", function()
      local c = json.decode('{"a": [], "o": {}, "l": [1], "m": {"x": 1}}')
      assert.equal(c.a, check.array(c, "a"))
      assert.equal(c.l, check.array(c, "l"))
      assert.equal("o {}: must be a list ([...]) of prefixes", err_of(check.array, c, "o", false, "prefixes"))
      assert.equal('m {"x":1}: must be a list ([...])', err_of(check.array, c, "m"))
      assert.equal(c.o, check.object(c, "o"))
      assert.equal("a []: must be an object ({...})", err_of(check.object, c, "a"))
      assert.equal("a: missing", err_of(check.array, {}, "a"))
      assert.is_nil(check.array({}, "a", true))
    end)

    it("takes tables built in Lua by their keys", function()
      assert.is_true(check.is_array({}))
      assert.is_true(check.is_array({ 1, 2 }))
      assert.is_false(check.is_array({ 1, nil, 3 }))
      assert.is_false(check.is_array({ x = 1 }))
      assert.is_true(check.is_object({}))
      assert.is_false(check.is_object({ 1 }))
      assert.is_false(check.is_object(json.array()))
      assert.matches("must be an object", err_of(check.known_fields, { 1, 2 }, { "a" }), 1, true)
    end)
  end)

  describe("endpoint", function()
    it("refuses addresses no peer can have", function()
      for _, case in ipairs({
        { "0.0.0.0:51820", "is an unspecified address" },
        { "[::]:51820", "is an unspecified address" },
        { "127.0.0.1:51820", "is a loopback address" },
        { "[::1]:51820", "is a loopback address" },
        { "224.0.0.5:51820", "is a multicast address" },
        { "[ff02::1]:51820", "is a multicast address" },
        { "255.255.255.255:51820", "is the broadcast address" },
        { "[::ffff:127.0.0.1]:51820", "is a loopback address" },
      }) do
        assert.equal("e '" .. case[1] .. "': " .. case[2] .. ", not a peer's", err_of(check.endpoint, case[1], "e"))
      end
      assert.equal("203.0.113.9:51820", check.endpoint("203.0.113.9:51820", "e"))
      assert.equal("[2001:db8::9]:51820", check.endpoint("[2001:DB8::9]:51820", "e"))
    end)
  end)

  it("tells canonical base64 from the rest", function()
    assert.is_nil(check.base64_problem("c2VhbGVk"))
    assert.is_nil(check.base64_problem("c2VhbGU="))
    assert.is_nil(check.base64_problem("c2VhbA=="))
    assert.equal("its length is not a multiple of 4", check.base64_problem("c2VhbGU"))
    assert.equal("its length is not a multiple of 4", check.base64_problem("c2VhbGU=="))
    assert.equal("'=' may only pad the end", check.base64_problem("c2V=bGU="))
    assert.equal("'=' may only pad the end", check.base64_problem("c==="))
    assert.equal("the bits after its last byte are not zero", check.base64_problem("c2VhbGV="))
    assert.equal("the bits after its last byte are not zero", check.base64_problem("c2VhbB=="))
    assert.equal("holds characters outside A-Z a-z 0-9 + / =", check.base64_problem("c2Vh bGVk"))
    assert.equal("not a non-empty string", check.base64_problem(""))
  end)

  it("checks node ids", function()
    assert.equal("n1", check.node_id("n1", "node_id"))
    assert.matches("^peers%[1%]%.node_id 42: must be 1..63", err_of(check.node_id, 42, "peers[1].node_id"))
    assert.matches("(1048576 bytes): must be", err_of(check.node_id, ("a"):rep(1 << 20), "node_id"), 1, true)
    assert.matches("'-x'", err_of(check.node_id, "-x", "node_id"), 1, true)
  end)
end)
