-- zmesh.firewall without the kernel: validation that names the field,
-- normalization, nft syntax, and hand-over to a fake core.
local firewall = require "zmesh.firewall"
local vocabulary = dofile((os.getenv("ZMESH_ROOT") or ".") .. "/tests/fixtures/nft/vocabulary.lua")

local function rule(r, chain)
  local c = { name = "input", type = "filter", hook = "input", rules = { r } }
  for k, v in pairs(chain or {}) do c[k] = v end
  return { chains = { c, { name = "sub" } } }
end

local function invalid(desc, msg)
  local ok, err = firewall.validate(desc)
  assert.is_nil(ok, "expected: " .. msg)
  assert.equals(msg, err)
end

describe("firewall.validate", function()
  it("accepts the whole vocabulary and fills in the defaults", function()
    for _, d in ipairs(vocabulary) do assert.is_table(firewall.validate(d)) end
    local d = assert(firewall.validate({ chains = {
      { name = "f", type = "filter", hook = "forward" },
      { name = "pre", type = "nat", hook = "prerouting" },
      { name = "post", type = "nat", hook = "postrouting" },
      { name = "reg" },
    } }))
    assert.equals("inet", d.family)
    assert.equals("zmesh", d.table)
    assert.same({ 0, -100, 100 }, { d.chains[1].priority, d.chains[2].priority, d.chains[3].priority })
    assert.equals("accept", d.chains[1].policy)
    assert.same({ name = "reg" }, d.chains[4])
  end)

  it("does not change the description it is given", function()
    local d = rule({ match = { tcp_dport = { 22, 80 } }, verdict = "accept" })
    local copy = assert(firewall.validate(d))
    copy.chains[1].rules[1].match.tcp_dport[1] = 1
    assert.equals(22, d.chains[1].rules[1].match.tcp_dport[1])
    assert.is_nil(d.family)
  end)

  it("names the field and the value of every mistake", function()
    invalid("x", "ruleset: table expected, got string")
    invalid({ tables = {} }, "ruleset: unknown field 'tables'")
    invalid({ family = "bridge" }, 'family: unknown value "bridge"')
    invalid({ chains = { { name = "a" }, { name = "a" } } }, "chains[2].name: chain 'a' defined twice")
    invalid({ chains = { { name = "a", hook = "input" } } },
      "chains[1].type: a base chain needs type and hook (a regular chain has neither)")
    invalid({ chains = { { name = "a", type = "nat", hook = "forward" } } },
      "chains[1].hook: a nat chain cannot hook forward")
    invalid(rule({ match = { tcp_dport = 65536 } }), "chains[1].rules[1].match.tcp_dport: 65536 out of range 0..65535")
    invalid(rule({ match = { tcp_dport = "9-1" } }),
      'chains[1].rules[1].match.tcp_dport: "9-1" is not a range lo-hi within 0..65535')
    invalid(rule({ match = { udp_sport = { 53, 53 } } }), "chains[1].rules[1].match.udp_sport: value 53 twice in the set")
    invalid(rule({ match = { ip_daddr = "192.0.2.1/24" } }),
      "chains[1].rules[1].match.ip_daddr: '192.0.2.1/24' has host bits set (did you mean 192.0.2.0/24?)")
    invalid(rule({ match = { ip_daddr = "0.0.0.0/0" } }),
      'chains[1].rules[1].match.ip_daddr: "0.0.0.0/0" matches everything; leave the match out')
    invalid(rule({ match = { ip6_saddr = "192.0.2.1" } }),
      'chains[1].rules[1].match.ip6_saddr: "192.0.2.1" is not an IPv6 address or prefix')
    invalid(rule({ match = { iifname = "has space" } }), 'chains[1].rules[1].match.iifname: invalid interface name "has space"')
    invalid(rule({ match = { ct_state = "est" } }), 'chains[1].rules[1].match.ct_state: unknown value "est"')
    invalid(rule({ match = { icmpv6_type = "echo" } }), 'chains[1].rules[1].match.icmpv6_type: unknown value "echo"')
    invalid(rule({ match = { ip_saddr = "192.0.2.1", icmpv6_type = 128 } }),
      "chains[1].rules[1].match: IPv4 and IPv6 matches in one rule")
    invalid(rule({ match = { tcp_dport = 1, icmp_type = 8 } }),
      "chains[1].rules[1].match: matches on two layer 4 protocols")
    invalid(rule({ match = { l4proto = "udp", tcp_sport = 1 } }),
      "chains[1].rules[1].match.l4proto: contradicts the port or type match")
    invalid(rule({ verdict = "deny" }), 'chains[1].rules[1].verdict: unknown verdict "deny" (accept, drop, reject, return)')
    invalid(rule({ verdict = "drop", masquerade = true }),
      "chains[1].rules[1].masquerade: a rule has one action, it already has 'verdict'")
    invalid(rule({ jump = "input" }), "chains[1].rules[1].jump: 'input' is a base chain; only regular chains are targets")
    invalid(rule({ ["goto"] = "nope" }), "chains[1].rules[1].goto: no chain 'nope' in this table")
    invalid(rule({ masquerade = true }), "chains[1].rules[1]: masquerade needs a nat chain, 'input' is filter")
    invalid(rule({ dnat = "192.0.2.1" }, { type = "nat", hook = "postrouting" }),
      "chains[1].rules[1]: dnat is not allowed in a postrouting hook")
    invalid(rule({ verdict = "reject" }, { hook = "postrouting" }),
      "chains[1].rules[1]: reject is not allowed in a postrouting hook")
    invalid(rule({ snat = { to = "192.0.2.1", random = true } }, { type = "nat", hook = "postrouting" }),
      "chains[1].rules[1].snat: unknown field 'random'")
    invalid({ family = "ip", chains = { { name = "p", type = "nat", hook = "postrouting",
      rules = { { snat = "2001:db8::1" } } } } },
      "chains[1].rules[1].snat: 2001:db8::1 does not fit the table's family ip")
    invalid(rule({ comment = 'say "hi"', verdict = "accept" }),
      "chains[1].rules[1].comment: 1..128 characters without quotes or newlines")
    invalid(rule({ match = {} }), "chains[1].rules[1]: empty rule: give a match, a counter or an action")
    invalid({ chains = { { name = "c", rules = { [1] = { counter = true }, [3] = { counter = true } } } } },
      "chains[1].rules: a list expected (keys 1..n), found key 3")
  end)
end)

describe("firewall.render and script", function()
  it("writes nft syntax, in the order rules are tested", function()
    local text = firewall.render({ chains = {
      { name = "input", type = "filter", hook = "input", policy = "drop", rules = {
        { match = { tcp_dport = { 22, 80 }, iifname = "!public", ip_saddr = "192.0.2.7/32",
          ct_state = { "related", "established" } }, counter = true, verdict = "accept", comment = "c" },
        { match = { l4proto = "icmpv6" }, jump = "sub" },
      } },
      { name = "sub", rules = { { match = { ip6_daddr = "2001:db8::1/128" }, verdict = "return" } } },
      { name = "post", type = "nat", hook = "postrouting", rules = {
        { match = { oifname = "up*" }, snat = { to = "2001:db8::5", fully_random = true } },
        { masquerade = { fully_random = true } },
      } },
    } })
    assert.equals(table.concat({
      "table inet zmesh {",
      "\tchain input {",
      "\t\ttype filter hook input priority 0; policy drop;",
      '\t\tiifname != "public" ct state established,related ip saddr 192.0.2.7 tcp dport { 22, 80 } counter accept comment "c"',
      "\t\tmeta l4proto ipv6-icmp jump sub",
      "\t}",
      "",
      "\tchain sub {",
      "\t\tip6 daddr 2001:db8::1 return",
      "\t}",
      "",
      "\tchain post {",
      "\t\ttype nat hook postrouting priority 100; policy accept;",
      '\t\toifname "up*" snat ip6 to 2001:db8::5 fully-random',
      "\t\tmasquerade fully-random",
      "\t}",
      "}",
    }, "\n") .. "\n", text)
  end)

  it("replaces the table in one nft -f transaction", function()
    local s = firewall.script({ family = "ip", table = "t", chains = {} })
    assert.equals("table ip t\ndelete table ip t\ntable ip t {\n}\n", s)
  end)

  it("raises on an invalid description", function()
    assert.has_error(function() firewall.render({ chains = 1 }) end, "chains: a list expected, got number")
  end)
end)

describe("firewall.apply", function()
  local saved, calls

  before_each(function()
    saved = package.loaded["zmesh.core"]
    calls = {}
    package.loaded["zmesh.core"] = { nft = {
      apply = function(ns, desc) calls[#calls + 1] = { ns = ns, desc = desc }; return true end,
    } }
  end)

  after_each(function() package.loaded["zmesh.core"] = saved end)

  it("hands the normalized description to core.nft.apply", function()
    assert.is_true(firewall.apply("n-x", { chains = { { name = "c", type = "filter", hook = "input" } } }))
    assert.equals(1, #calls)
    assert.equals("n-x", calls[1].ns)
    assert.same({ family = "inet", table = "zmesh", chains = {
      { name = "c", type = "filter", hook = "input", priority = 0, policy = "accept" } } }, calls[1].desc)
  end)

  it("does not call the core with a bad description", function()
    local ok, err, ename = firewall.apply("n-x", { chains = { { name = "c", rules = { { verdict = 1 } } } } })
    assert.is_nil(ok)
    assert.equals("EINVAL", ename)
    assert.equals("EINVAL: chains[1].rules[1].verdict: unknown verdict 1 (accept, drop, reject, return)", err)
    assert.equals(0, #calls)
  end)
end)

describe("firewall.counters", function()
  it("maps rule comments to their counters", function()
    local dump = { chains = {
      { name = "input", rules = { { comment = "a", packets = 3, bytes = 9 }, { packets = 1, bytes = 1 } } },
      { name = "forward", rules = { { comment = "b", packets = 0, bytes = 0 }, { comment = "nocounter" } } },
    } }
    assert.same({ a = { packets = 3, bytes = 9, chain = "input" }, b = { packets = 0, bytes = 0, chain = "forward" } },
      firewall.counters(dump))
  end)
end)
