-- core.nft: conversion only. A caller's mistake raises and names the
-- field by its path; a system failure returns nil, "ENAME: …", "ENAME".
-- Nothing here reaches a kernel table: mistakes raise before anything is
-- opened, and failures use a namespace that does not exist.
local core = require "zmesh.core"
local firewall = require "zmesh.firewall"
local testns = require "testns"
local vocabulary = dofile((os.getenv("ZMESH_ROOT") or ".") .. "/tests/fixtures/nft/vocabulary.lua")

local nft = core.nft

-- A description with one rule R in a base chain (or the chains given).
local function with_rule(r, chain)
  local c = { name = "input", type = "filter", hook = "input", rules = { r } }
  for k, v in pairs(chain or {}) do c[k] = v end
  return { chains = { c, { name = "sub" } } }
end

local function raises(desc, msg, fn)
  local ok, err = pcall(fn or nft.check, desc)
  assert.is_false(ok, "expected an error mentioning " .. msg)
  assert.matches(msg, err, 1, true)
  return err
end

describe("core.nft", function()
  it("has the same vocabulary as zmesh.firewall, name for name", function()
    assert.same(firewall.names, nft.names)
  end)

  it("accepts the whole vocabulary", function()
    for _, d in ipairs(vocabulary) do assert.is_true(nft.check(d)) end
    assert.is_true(nft.check({}))
    assert.is_true(nft.check({ chains = {} }))
  end)

  it("accepts what firewall.validate returns, defaults filled in", function()
    for _, d in ipairs(vocabulary) do assert.is_true(nft.check(assert(firewall.validate(d)))) end
  end)

  it("raises naming the field, for each kind of mistake", function()
    local cases = {
      { "x", "bad argument #1 to '?' (table expected, got string)" },
      { { famly = "inet" }, ": unknown field 'famly'" },
      { { family = "arp" }, "family: unknown value 'arp'" },
      { { table = "" }, "table: table name" },
      { { chains = { [2] = {} } }, "chains: a list expected" },
      { { chains = { { name = "a" }, { name = "a" } } }, "chains[2].name: chain 'a' defined twice" },
      { { chains = { { name = "a", type = "filter" } } }, "chains[1].hook: a base chain needs type and hook" },
      { { chains = { { name = "a", type = "filter", hook = "ingress" } } }, "chains[1].hook: unknown value 'ingress'" },
      { { chains = { { name = "a", type = "route", hook = "input" } } }, "chains[1].type: unknown value 'route'" },
      { { chains = { { name = "a", type = "filter", hook = "input", priority = 1.5 } } }, "chains[1].priority" },
      { { chains = { { name = "a", type = "filter", hook = "input", policy = "reject" } } }, "chains[1].policy" },
      { { chains = { { name = "a", rules = { {} } } } }, "chains[1].rules[1]: empty rule" },
      { with_rule({ verdict = "accept", nope = 1 }), "chains[1].rules[1]: unknown field 'nope'" },
      { with_rule({ match = { dport = 1 } }), "chains[1].rules[1].match: unknown field 'dport'" },
      { with_rule({ match = { tcp_dport = 70000 } }), "chains[1].rules[1].match.tcp_dport: 70000 out of range 0..65535" },
      { with_rule({ match = { tcp_dport = "20-10" } }), "match.tcp_dport: '20-10' is not a range" },
      { with_rule({ match = { tcp_dport = { 1, 1 } } }), "match.tcp_dport: value 1 twice in the set" },
      { with_rule({ match = { udp_dport = {} } }), "match.udp_dport: a set needs 1..256 values" },
      { with_rule({ match = { iifname = "waytoolonginterfacename" } }), "match.iifname: invalid interface name" },
      { with_rule({ match = { iifname = "*" } }), "match.iifname: invalid interface name" },
      { with_rule({ match = { oifname = 7 } }), "match.oifname: interface name expected, got number" },
      { with_rule({ match = { ip_saddr = "10.1.2.3/16" } }), "match.ip_saddr: '10.1.2.3/16' has host bits set" },
      { with_rule({ match = { ip_saddr = "2001:db8::1" } }), "match.ip_saddr: '2001:db8::1' is not an IPv4" },
      { with_rule({ match = { ip6_daddr = "2001:db8::/129" } }), "match.ip6_daddr: '2001:db8::/129' has an invalid prefix length" },
      { with_rule({ match = { ct_state = { "established", "bogus" } } }), "match.ct_state: unknown value 'bogus'" },
      { with_rule({ match = { l4proto = "sctp" } }), "match.l4proto: unknown value 'sctp'" },
      { with_rule({ match = { icmp_type = "nd-neighbor-solicit" } }), "match.icmp_type: unknown value 'nd-neighbor-solicit'" },
      { with_rule({ match = { ip_saddr = "192.0.2.1", ip6_daddr = "2001:db8::1" } }), "match: IPv4 and IPv6 matches in one rule" },
      { with_rule({ match = { tcp_dport = 1, udp_dport = 2 } }), "match: matches on two layer 4 protocols" },
      { with_rule({ match = { l4proto = "udp", tcp_dport = 2 } }), "match.l4proto: contradicts" },
      { with_rule({ verdict = "accept", jump = "sub" }), "chains[1].rules[1].jump: a rule has one action, it already has 'verdict'" },
      { with_rule({ verdict = "allow" }), "chains[1].rules[1].verdict: unknown verdict 'allow'" },
      { with_rule({ jump = "nowhere" }), "chains[1].rules[1].jump: no chain 'nowhere' in this table" },
      { with_rule({ ["goto"] = "input" }), "chains[1].rules[1].goto: 'input' is a base chain" },
      { with_rule({ masquerade = { random = true } }), "chains[1].rules[1].masquerade: unknown field 'random'" },
      { with_rule({ snat = "not-an-address" }), "chains[1].rules[1].snat: 'not-an-address' is not an address" },
      { with_rule({ counter = "yes" }), "chains[1].rules[1].counter: boolean expected" },
      { with_rule({ verdict = "accept", comment = string.rep("x", 129) }), "chains[1].rules[1].comment: 1..128" },
    }
    for _, c in ipairs(cases) do raises(c[1], c[2]) end
  end)

  it("raises on family mismatches", function()
    raises({ family = "ip", chains = { { name = "c", rules = { { match = { ip6_saddr = "2001:db8::1" } } } } } },
      "IPv6 match in an ip table")
    raises({ family = "ip6", chains = { { name = "c", rules = { { match = { icmp_type = 8 } } } } } },
      "IPv4 match in an ip6 table")
    raises({ family = "ip6", chains = { { name = "c", rules = { { snat = "192.0.2.1" } } } } },
      "does not fit the table's family")
  end)

  it("checks apply's arguments before opening anything", function()
    raises(with_rule({ verdict = "nope" }), "bad argument #2 to 'apply' (chains[1].rules[1].verdict",
      function(d) return nft.apply(testns.name("never-made"), d) end)
    assert.has_error(function() nft.apply(42, {}) end,
      "bad argument #1 to 'apply' (namespace name or handle expected)")
    assert.has_error(function() nft.apply("bad/name", {}) end)
    assert.has_error(function() nft.dump(nil, { family = "arp" }) end,
      "bad argument #2 to 'dump' (field 'family': unknown family 'arp')")
    assert.has_error(function() nft.delete(nil, { tabel = "x" }) end,
      "bad argument #2 to 'delete' (unknown field 'tabel')")
  end)

  it("returns the error triple when the namespace does not exist", function()
    local missing = testns.name("never-made")
    for _, call in ipairs({
      function() return nft.apply(missing, { chains = {} }) end,
      function() return nft.dump(missing) end,
      function() return nft.delete(missing, { table = "t" }) end,
    }) do
      local ok, err, ename = call()
      assert.is_nil(ok)
      assert.equals("ENOENT", ename)
      assert.matches("^ENOENT: namespace '" .. missing:gsub("%-", "%%-") .. "' does not exist", err)
    end
  end)
end)
