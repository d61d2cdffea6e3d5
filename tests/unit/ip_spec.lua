-- zmesh.ip: parsing, formatting, containment, subnets and classes.
local ip = require "zmesh.ip"

local function cidr(s) return assert(ip.parse_cidr(s)) end

describe("zmesh.ip", function()
  it("parses and formats IPv4 and IPv6 (RFC 5952)", function()
    for _, case in ipairs({
      { "10.1.2.3", "10.1.2.3" }, { "0.0.0.0", "0.0.0.0" },
      { "fd00:0:0:1::", "fd00:0:0:1::" }, { "2001:DB8:0:0:0:0:0:1", "2001:db8::1" },
      { "::", "::" }, { "::1", "::1" }, { "1::", "1::" }, { "1:0:0:2:0:0:0:3", "1:0:0:2::3" },
      { "1:0:0:2:0:0:3:4", "1::2:0:0:3:4" }, { "::ffff:1.2.3.4", "::ffff:102:304" },
      { "0:1:0:0:0:0:0:0", "0:1::" }, { "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8" },
    }) do
      assert.equal(case[2], ip.format_addr(assert(ip.parse_addr(case[1]))), case[1])
    end
  end)

  it("refuses malformed addresses", function()
    for _, s in ipairs({ "10.1.2", "10.1.2.256", "010.1.2.3", "1.2.3.4.5", "1:::2", "1::2::3",
        "1:2:3:4:5:6:7:8:9", "12345::", "g::1", "1.2.3.4::", "a::1:.:ff", "", " 10.1.1.1" }) do
      assert.is_nil(ip.parse_addr(s), s)
    end
    assert.same({ nil, "address must be a string", "must be a string (an address)" }, { ip.parse_addr(5) })
  end)

  it("parses prefixes, strictly when asked", function()
    assert.equal(16, cidr("10.1.0.0/16").len)
    assert.same({ nil, "'10.1.2.0/16' has host bits set (did you mean 10.1.0.0/16?)",
      "has host bits set (did you mean 10.1.0.0/16?)" },
      { ip.parse_cidr("10.1.2.0/16", { strict = true }) })
    assert.same({ nil, "'10.1.0.0/33' has an invalid prefix length", "has an invalid prefix length" },
      { ip.parse_cidr("10.1.0.0/33") })
    assert.same({ nil, "'10.1.0.0/016' has an invalid prefix length", "has an invalid prefix length" },
      { ip.parse_cidr("10.1.0.0/016") })
    assert.same({ nil, "'10.1.0.0' is not an address/prefix (CIDR)", "is not an address/prefix (CIDR)" },
      { ip.parse_cidr("10.1.0.0") })
    assert.equal(32, ip.parse_cidr("10.1.0.0", { host_ok = true }).len)
  end)

  it("memoises parsing in ip.parsed, failures too", function()
    local a = ip.parsed("10.9.0.0/16")
    assert.equal(a, ip.parsed("10.9.0.0/16"))
    assert.equal(128, ip.parsed("fd00::1").len)
    assert.is_nil(ip.parsed("nope"))
    assert.is_nil(ip.parsed("nope"))
    ip.forget()
    assert.not_equal(a, ip.parsed("10.9.0.0/16"))
  end)

  it("tells network prefixes and keys them", function()
    assert.is_true(ip.is_network(cidr("10.1.0.0/16")))
    assert.is_false(ip.is_network(cidr("10.1.2.0/16")))
    assert.is_true(ip.is_network(cidr("10.1.1.128/25")))
    assert.is_false(ip.is_network(cidr("10.1.1.64/25")))
    assert.is_true(ip.is_network(cidr("fd00:1::/48")))
    assert.is_false(ip.is_network(cidr("fd00:1::1/64")))
    assert.equal(ip.key(cidr("fd00:0:1::/48")), ip.key(cidr("fd00:0:1:0::/48")))
    assert.not_equal(ip.key(cidr("10.1.0.0/16")), ip.key(cidr("10.1.0.0/24")))
  end)

  it("contains, overlaps and compares", function()
    assert.is_true(ip.contains(cidr("10.0.0.0/8"), cidr("10.1.2.0/24")))
    assert.is_false(ip.contains(cidr("10.1.2.0/24"), cidr("10.0.0.0/8")))
    assert.is_true(ip.contains(cidr("10.1.2.0/24"), ip.parse_addr("10.1.2.9")))
    assert.is_false(ip.contains(cidr("10.1.2.0/24"), ip.parse_addr("fd00::1")))
    assert.is_true(ip.contains(cidr("0.0.0.0/0"), cidr("192.168.1.0/24")))
    assert.is_true(ip.contains(cidr("10.1.1.0/25"), ip.parse_addr("10.1.1.127")))
    assert.is_false(ip.contains(cidr("10.1.1.0/25"), ip.parse_addr("10.1.1.128")))
    assert.is_true(ip.overlaps(cidr("10.1.0.0/16"), cidr("10.0.0.0/8")))
    assert.is_false(ip.overlaps(cidr("10.1.0.0/16"), cidr("10.2.0.0/16")))
    assert.is_true(ip.compare(cidr("10.1.0.0/16"), cidr("10.2.0.0/16")))
    assert.is_true(ip.compare(cidr("10.1.0.0/16"), cidr("fd00::/8")))
  end)

  it("counts, indexes and enumerates subnets and hosts", function()
    local r = cidr("10.1.0.0/16")
    assert.equal(256, ip.subnet_count(r, 24))
    assert.equal("10.1.7.0/24", ip.format_cidr(ip.subnet(r, 24, 7)))
    assert.equal(7, ip.subnet_index(r, cidr("10.1.7.0/24")))
    assert.is_nil(ip.subnet(r, 24, 256))
    assert.equal("fd00:1:0:ff::/64", ip.format_cidr(ip.subnet(cidr("fd00:1::/48"), 64, 255)))
    assert.equal("10.1.7.1", ip.format_addr(ip.host(cidr("10.1.7.0/24"), 1)))
    assert.is_nil(ip.host(cidr("10.1.7.0/24"), 256))
  end)

  it("classifies addresses", function()
    for _, case in ipairs({
      { "10.1.1.1", "private" }, { "172.16.0.1", "private" }, { "172.32.0.1", "global" },
      { "192.168.9.9", "private" }, { "100.64.0.1", "cgnat" }, { "100.127.255.1", "cgnat" },
      { "100.128.0.1", "global" }, { "169.254.1.1", "link-local" }, { "192.0.2.1", "documentation" },
      { "198.51.100.1", "documentation" }, { "203.0.113.1", "documentation" }, { "8.8.8.8", "global" },
      { "127.0.0.1", "loopback" }, { "0.0.0.0", "unspecified" }, { "224.0.0.5", "multicast" },
      { "255.255.255.255", "reserved" }, { "::1", "loopback" }, { "::", "unspecified" },
      { "fd12::1", "ula" }, { "fc00::1", "ula" }, { "fe80::1", "link-local" }, { "ff02::1", "multicast" },
      { "2001:db8::1", "documentation" }, { "2a01:4f8::1", "global" }, { "4000::1", "reserved" },
      { "::ffff:10.0.0.1", "reserved" },
    }) do
      assert.equal(case[2], ip.classify(ip.parse_addr(case[1])), case[1])
    end
  end)

  it("gives the reason for a bad address or prefix without the input", function()
    assert.equal("is not an IPv4 or IPv6 address", select(3, ip.parse_addr("x'y")))
    assert.equal("is not an address/prefix (CIDR)", select(3, ip.parse_cidr("a'b/24")))
    assert.equal("is not an IPv4 or IPv6 address", select(3, ip.parse_cidr("x", { host_ok = true })))
    assert.equal("must be a string (address/prefix)", select(3, ip.parse_cidr(false)))
  end)

  it("finds the overlap whose later entry comes first", function()
    local function list(...)
      local out = {}
      for i, s in ipairs({ ... }) do out[i] = cidr(s) end
      return out
    end
    assert.is_nil(ip.first_overlap(list("10.1.0.0/24", "10.1.1.0/24", "fd00::/64", "10.0.0.0/32")))
    assert.is_nil(ip.first_overlap({}))
    assert.same({ 3, 1 }, { ip.first_overlap(list("10.1.0.0/16", "10.2.0.0/16", "10.1.9.0/24")) })
    assert.same({ 2, 1 }, { ip.first_overlap(list("10.1.9.0/24", "10.1.0.0/16")) })
    assert.same({ 3, 2 }, { ip.first_overlap(list("fd00:1::/48", "10.1.1.1/32", "10.1.1.1/32")) })
    -- Entry 2 collides with 4 and 5 only; 3 with 1 comes first.
    assert.same({ 3, 1 }, { ip.first_overlap(list("10.9.0.0/16", "10.1.0.0/16", "10.9.9.0/24",
      "10.1.1.0/24", "10.1.2.0/24")) })
    -- The same addresses in two families never collide.
    assert.is_nil(ip.first_overlap(list("0.0.0.0/8", "::/8")))
    -- IPv6 halves compare unsigned.
    assert.same({ 2, 1 }, { ip.first_overlap(list("8000::/1", "ffff::/16", "::/1")) })
  end)
end)
