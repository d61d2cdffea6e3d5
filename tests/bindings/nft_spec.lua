-- core.nft: conversion only. A caller's mistake raises and names the
-- field by its path; a system failure returns nil, "ENAME: …", "ENAME".
-- Nothing here reaches a kernel table: mistakes raise before anything is
-- opened, and failures use a namespace that does not exist. What only the
-- kernel refuses (a chain or a set value twice, a jump to no chain or to a
-- base chain, a nat chain on forward …) is checked against the kernel,
-- with firewall.validate beside it, in tests/integration/nft_cases_spec.lua.
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
  it("is where the vocabulary is defined; zmesh.firewall uses it", function()
    assert.equals(firewall.names, nft.names)
    assert.same({ "inet", "ip", "ip6" }, nft.names.family)
    assert.same({ "accept", "drop", "reject", "return" }, nft.names.verdict)
    assert.equals(8, nft.numbers.icmp_type["echo-request"])
    assert.equals(6, nft.numbers.l4proto.tcp)
    assert.same({ prerouting = -100, input = 100, forward = 100, output = -100, postrouting = 100 },
      nft.defaults.priority.nat)
    assert.equals(0, nft.defaults.priority.filter.forward)
    assert.same({ family = "inet", table = "zmesh", policy = "accept" },
      { family = nft.defaults.family, table = nft.defaults.table, policy = nft.defaults.policy })
    assert.same({ set = 256, comment = 128, name = 255, ifname = 15 }, nft.limits)
  end)

  it("converts the whole vocabulary, raw and normalised", function()
    for _, d in ipairs(vocabulary) do
      assert.is_true(nft.check(d))
      assert.is_true(nft.check(assert(firewall.validate(d))))
    end
    assert.is_true(nft.check({}))
    assert.is_true(nft.check({ chains = {} }))
  end)

  it("raises naming the field, for each kind of mistake it cannot convert", function()
    local cases = {
      { "x", "bad argument #1 to '?' (ruleset: table expected, got string)" },
      { { famly = "inet" }, "(ruleset: unknown field 'famly')" },
      { { family = "arp" }, "family: unknown value 'arp'" },
      { { table = "" }, "table: table name" },
      { { chains = { [2] = {} } }, "chains: a list expected" },
      { { chains = { { name = "a", type = "filter" } } }, "chains[1].hook: a base chain needs type and hook" },
      { { chains = { { name = "a", policy = "drop" } } }, "chains[1].type: a base chain needs type and hook" },
      { { chains = { { name = "a", type = "filter", hook = "ingress" } } }, "chains[1].hook: unknown value 'ingress'" },
      { { chains = { { name = "a", type = "route", hook = "input" } } }, "chains[1].type: unknown value 'route'" },
      { { chains = { { name = "a", type = "filter", hook = "input", priority = 1.5 } } }, "chains[1].priority" },
      { { chains = { { name = "a", type = "filter", hook = "input", policy = "reject" } } }, "chains[1].policy" },
      { { chains = { { name = "a", rules = { {} } } } }, "chains[1].rules[1]: empty rule" },
      { with_rule({ verdict = "accept", nope = 1 }), "chains[1].rules[1]: unknown field 'nope'" },
      { with_rule({ match = { dport = 1 } }), "chains[1].rules[1].match: unknown field 'dport'" },
      { with_rule({ match = { tcp_dport = 70000 } }), "chains[1].rules[1].match.tcp_dport: 70000 out of range 0..65535" },
      { with_rule({ match = { tcp_dport = "20-10" } }), "match.tcp_dport: '20-10' is not a range" },
      { with_rule({ match = { udp_dport = {} } }), "match.udp_dport: a set needs 1..256 values" },
      { with_rule({ match = { iifname = "waytoolonginterfacename" } }), "match.iifname: invalid interface name" },
      { with_rule({ match = { iifname = "*" } }), "match.iifname: invalid interface name" },
      { with_rule({ match = { iifname = "a/b*" } }), "match.iifname: invalid interface name" },
      { with_rule({ match = { oifname = 7 } }), "match.oifname: interface name expected, got number" },
      { with_rule({ match = { ip_saddr = "10.1.2.3/16" } }), "match.ip_saddr: '10.1.2.3/16' has host bits set" },
      { with_rule({ match = { ip_saddr = "2001:db8::1" } }), "match.ip_saddr: '2001:db8::1' is not an IPv4" },
      { with_rule({ match = { ip6_daddr = "2001:db8::/129" } }), "match.ip6_daddr: '2001:db8::/129' is not an IPv6" },
      { with_rule({ match = { ip_daddr = "0.0.0.0/0" } }), "match.ip_daddr: '0.0.0.0/0' matches everything" },
      { with_rule({ match = { ct_state = { "established", "bogus" } } }), "match.ct_state: unknown value 'bogus'" },
      { with_rule({ match = { ct_state = { "new", "new" } } }), "match.ct_state: state listed twice" },
      { with_rule({ match = { l4proto = "sctp" } }), "match.l4proto: unknown value 'sctp'" },
      { with_rule({ match = { icmp_type = "nd-neighbor-solicit" } }), "match.icmp_type: unknown value 'nd-neighbor-solicit'" },
      { with_rule({ match = { ip_saddr = "192.0.2.1", ip6_daddr = "2001:db8::1" } }), "match: IPv4 and IPv6 matches in one rule" },
      { with_rule({ match = { tcp_dport = 1, udp_dport = 2 } }), "match: matches on two layer 4 protocols" },
      { with_rule({ match = { l4proto = "udp", tcp_dport = 2 } }), "match.l4proto: contradicts" },
      { with_rule({ verdict = "accept", jump = "sub" }), "chains[1].rules[1].jump: a rule has one action, it already has 'verdict'" },
      { with_rule({ verdict = "allow" }), "chains[1].rules[1].verdict: unknown verdict 'allow'" },
      { with_rule({ jump = 5 }), "chains[1].rules[1].jump: chain name" },
      { with_rule({ masquerade = { random = true } }), "chains[1].rules[1].masquerade: unknown field 'random'" },
      { with_rule({ masquerade = false }), "chains[1].rules[1].masquerade: true or" },
      { with_rule({ snat = "not-an-address" }), "chains[1].rules[1].snat: 'not-an-address' is not an address" },
      { with_rule({ counter = "yes" }), "chains[1].rules[1].counter: boolean expected" },
      { with_rule({ verdict = "accept", comment = string.rep("x", 129) }), "chains[1].rules[1].comment: 1..128" },
      { with_rule({ verdict = "accept", comment = 'a "quote"' }), "chains[1].rules[1].comment: 1..128" },
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

  it("leaves to the kernel what only the kernel knows", function()
    -- Converted as they are; the commit is refused (nft_cases_spec).
    assert.is_true(nft.check({ chains = { { name = "a" }, { name = "a" } } }))
    assert.is_true(nft.check(with_rule({ jump = "nowhere" })))
    assert.is_true(nft.check(with_rule({ masquerade = true })))
    assert.is_true(nft.check({ chains = { { name = "n", type = "nat", hook = "forward" } } }))
    assert.is_true(nft.check(with_rule({ match = { tcp_dport = { 1, 1 } } })))
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
