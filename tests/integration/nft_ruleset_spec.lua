-- The nft area against the kernel and the real nft tool, in namespaces of
-- this test run only: what core.nft applies is what nft itself makes of
-- the same description, replacing is all or nothing, dump reads counters.
local core = require "zmesh.core"
local firewall = require "zmesh.firewall"
local testns = require "testns"
local root = os.getenv("ZMESH_ROOT") or "."
local h = dofile(root .. "/tests/fixtures/nft/helpers.lua")
local vocabulary = dofile(root .. "/tests/fixtures/nft/vocabulary.lua")

local NR_CTX = { uplink = "public", range = "192.0.2.0/24", range6 = "2001:db8:1::/48",
  wg = "w-test", bridge = "b-test" }
local NDMZ_CTX = { uplink = "public", bridge = "tonrs", range = "100.127.0.0/16",
  wg_ports = { 51820, 51821 }, dhcp = true }

local function policy(role, ctx) return assert(firewall.from_policy(role, ctx)) end

-- A table that counts echo requests leaving NS, and one more chain.
local function counting(extra_rule)
  local rules = { { match = { icmp_type = "echo-request" }, counter = true, comment = "pings" } }
  if extra_rule then rules[2] = extra_rule end
  return {
    table = "zmesh",
    chains = {
      { name = "output", type = "filter", hook = "output", rules = rules },
      { name = "forward", type = "filter", hook = "forward", policy = "accept",
        rules = { { match = { iifname = "public" }, counter = true, verdict = "drop",
          comment = "diode" } } },
    },
  }
end

local function ping_self(ns, n)
  h.sh(string.format("ip netns exec %s ping -c %d -i 0.01 -W 1 127.0.0.1", ns, n))
end

-- The handle and counters (dump.live) of the rule with COMMENT in CHAIN.
local function find_rule(dump, chain, comment)
  for i, c in ipairs(dump.chains) do
    if c.name == chain then
      for j, r in ipairs(c.rules) do
        if r.comment == comment then return dump.live.chains[i].rules[j] end
      end
    end
  end
end

local describe_root = h.is_root() and describe or pending

describe_root("core.nft in a namespace", function()
  local A, B

  setup(function()
    A, B = testns.name("fw-a"), testns.name("fw-b")
    assert(core.netns.create(A))
    assert(core.netns.create(B))
    h.sh("ip -n " .. A .. " link set lo up")
  end)

  teardown(function()
    local ok, err = testns.cleanup()
    assert(ok, err)
  end)

  before_each(function()
    h.nft(A, "flush ruleset")
    h.nft(B, "flush ruleset")
  end)

  local function same_as_nft(descs)
    for _, d in ipairs(descs) do
      local norm = assert(firewall.validate(d))
      assert.is_true(core.nft.apply(A, norm))
      local out, ok = h.nft_file(B, firewall.script(norm))
      assert(ok, out)
    end
    local listing = h.listing(A)
    assert.equals(h.listing(B), listing)
    assert.equals(h.bytecode(B), h.bytecode(A))
    return listing
  end

  it("makes every word of the vocabulary exactly as nft -f does (text and bytecode)", function()
    local listing = same_as_nft(vocabulary)
    -- The listing is the real one, not two empty ones.
    assert.matches('iifname "public" ct state established,related counter accept comment "replies"',
      listing, 1, true)
    assert.matches("tcp dport { 80, 443, 8080 }", listing, 1, true)
    assert.matches("snat ip6 to 2001:db8:ffff::1 fully-random", listing, 1, true)
    assert.matches("table ip6 zmesh6", listing, 1, true)
  end)

  it("makes the default NR and ndmz policies exactly as nft -f does", function()
    local nr = same_as_nft({ policy("nr", NR_CTX) })
    assert.matches('iifname "public" ct state established,related accept', nr, 1, true)
    assert.matches('oifname "public" ip daddr 192.0.2.0/24 accept', nr, 1, true)
    assert.matches('oifname "public" counter masquerade', nr, 1, true)
    assert.matches("chain forward", nr, 1, true)
    assert.matches("icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept",
      nr, 1, true)
    h.nft(A, "flush ruleset")
    h.nft(B, "flush ruleset")
    local ndmz = same_as_nft({ policy("ndmz", NDMZ_CTX) })
    assert.matches('iifname "public" udp dport { 51820, 51821 } accept', ndmz, 1, true)
    assert.matches('iifname "public" udp sport 67 udp dport 68 accept', ndmz, 1, true)
  end)

  it("dumps chains, rules, comments and exact counters", function()
    assert.is_true(core.nft.apply(A, counting()))
    ping_self(A, 3)
    local d = assert(core.nft.dump(A))
    assert.equals("inet", d.family)
    assert.equals("zmesh", d.table)
    assert.equals(2, #d.chains)
    local out = d.chains[1]
    assert.same({ "output", "filter", "output", 0, "accept" },
      { out.name, out.type, out.hook, out.priority, out.policy })
    assert.same({ match = { icmp_type = "echo-request" }, counter = true, comment = "pings" },
      out.rules[1])
    local r = d.live.chains[1].rules[1]
    assert.is_number(r.handle)
    assert.equals(3, r.packets)
    assert.equals(3 * 84, r.bytes) -- 20 IP + 8 ICMP + 56 data
    assert.equals(0, find_rule(d, "forward", "diode").packets)
    assert.same({ pings = { packets = 3, bytes = 252, chain = "output" },
      diode = { packets = 0, bytes = 0, chain = "forward" } }, firewall.counters(d))
  end)

  it("replaces the whole table: nothing of the old one stays", function()
    assert.is_true(core.nft.apply(A, counting()))
    ping_self(A, 2)
    assert.is_true(core.nft.apply(A, { chains = { { name = "only", rules = {
      { counter = true, comment = "new" } } } } }))
    local d = assert(core.nft.dump(A))
    assert.equals(1, #d.chains)
    assert.equals("only", d.chains[1].name)
    assert.equals(0, d.live.chains[1].rules[1].packets)
    assert.not_matches("pings", h.listing(A), 1, true)
  end)

  it("leaves the old table exactly as it was when the kernel refuses the batch half-way", function()
    assert.is_true(core.nft.apply(A, counting()))
    ping_self(A, 2)
    local before_list, before = h.listing(A), assert(core.nft.dump(A))
    assert.equals(2, before.live.chains[1].rules[1].packets)
    -- Valid chains and rules first, then a nat chain on the forward hook,
    -- which only the kernel refuses.
    local bad = counting({ counter = true, comment = "new rule" })
    bad.chains[#bad.chains + 1] = { name = "bad", type = "nat", hook = "forward" }
    bad.chains[#bad.chains + 1] = { name = "after", rules = { { counter = true } } }
    local ok, err, ename = core.nft.apply(A, bad)
    assert.is_nil(ok)
    assert.equals("EOPNOTSUPP", ename)
    assert.matches("chain 'bad'", err, 1, true)
    assert.matches("namespace " .. A, err, 1, true)
    -- Same rules, same handles, counters still counting from before.
    assert.equals(before_list, h.listing(A))
    local after = assert(core.nft.dump(A))
    assert.same(before.chains, after.chains)
    assert.same(before.live, after.live)
    ping_self(A, 1)
    assert.equals(3, assert(core.nft.dump(A)).live.chains[1].rules[1].packets)
  end)

  it("names the rule the kernel refused, by its place in the description", function()
    assert.is_true(core.nft.apply(A, counting()))
    local before = h.listing(A)
    -- masquerade in a filter chain: only the kernel knows (validation time).
    local ok, err, ename = core.nft.apply(A, counting({ masquerade = true }))
    assert.is_nil(ok)
    assert.equals("EOPNOTSUPP", ename)
    assert.matches("^EOPNOTSUPP: nft table inet zmesh in namespace " .. A:gsub("%-", "%%-")
      .. ": chain 'output' rule 2", err)
    assert.equals(before, h.listing(A))
  end)

  it("rejects bad descriptions with a message naming the field, and changes nothing", function()
    assert.is_true(core.nft.apply(A, counting()))
    local before = h.listing(A)
    local bad = counting({ match = { tcp_dport = 70000 }, verdict = "accept" })
    local ok, err, ename = firewall.apply(A, bad)
    assert.is_nil(ok)
    assert.equals("EINVAL", ename)
    assert.equals("EINVAL: chains[1].rules[2].match.tcp_dport: 70000 out of range 0..65535", err)
    assert.has_error(function() core.nft.apply(A, bad) end,
      "bad argument #2 to 'apply' (chains[1].rules[2].match.tcp_dport: 70000 out of range 0..65535)")
    local unknown = counting({ match = { dport = 22 } })
    ok, err = firewall.apply(A, unknown)
    assert.is_nil(ok)
    assert.matches("chains[1].rules[2].match: unknown field 'dport'", err, 1, true)
    assert.has_error(function() core.nft.apply(A, unknown) end)
    assert.equals(before, h.listing(A))
  end)

  it("deletes its table, also when there is none, and says so when dumping it", function()
    assert.is_true(core.nft.apply(A, counting()))
    assert.is_true(core.nft.delete(A))
    assert.equals("", h.listing(A))
    assert.is_true(core.nft.delete(A))
    local ok, err, ename = core.nft.dump(A)
    assert.is_nil(ok)
    assert.equals("ENOENT", ename)
    assert.matches("nft table inet zmesh in namespace " .. A:gsub("%-", "%%-") .. ": no such table", err)
  end)

  it("keeps other tables, and tables of other families, alone", function()
    local out, ok = h.nft_file(A, "table inet other {\n chain c {\n counter\n }\n}\n")
    assert(ok, out)
    assert.is_true(core.nft.apply(A, { family = "ip", table = "zmesh", chains = {} }))
    assert.is_true(core.nft.apply(A, counting()))
    assert.is_true(core.nft.delete(A, { family = "ip" }))
    local listing = h.listing(A)
    assert.matches("table inet other", listing, 1, true)
    assert.matches("table inet zmesh", listing, 1, true)
    assert.not_matches("table ip zmesh", listing, 1, true)
  end)

  it("applies thousands of rules in one batch", function()
    local rules = {}
    for i = 1, 3000 do
      rules[i] = { match = { tcp_dport = i, ip_saddr = "192.0.2." .. (i % 250 + 1) },
        counter = true, verdict = "accept" }
    end
    rules[#rules + 1] = { match = { udp_dport = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 } }, verdict = "drop" }
    assert.is_true(core.nft.apply(A, { chains = { { name = "big", type = "filter",
      hook = "input", rules = rules } } }))
    local d = assert(core.nft.dump(A))
    assert.equals(3001, #d.chains[1].rules)
  end)
end)
