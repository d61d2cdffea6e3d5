-- policies/firewall.lua: the default diode, decided in Lua and checked
-- here without a kernel by walking packets through the returned rules.
local firewall = require "zmesh.firewall"
local ip = require "zmesh.ip"

local root = os.getenv("ZMESH_ROOT") or "."
local NR_CTX = { uplink = "public", range = "10.1.0.0/16", wg = "w-abc", bridge = "b-abc" }

-- A packet: { iif, oif, ct, family = 4|6, saddr, daddr, l4proto, sport, dport, icmpv6_type }.
local function matches(m, p)
  local function name(want, have)
    if not want then return true end
    local neg = want:sub(1, 1) == "!"
    want = want:gsub("^!", "")
    local hit = want:sub(-1) == "*" and have and have:sub(1, #want - 1) == want:sub(1, -2) or have == want
    return hit ~= neg
  end
  local function addr(want, have, family)
    if not want then return true end
    if p.family ~= family or not have then return false end
    local neg = want:sub(1, 1) == "!"
    local hit = ip.contains(ip.parse_cidr(want:gsub("^!", ""), { host_ok = true }),
      ip.parse_cidr(have, { host_ok = true }))
    return hit ~= neg
  end
  local function value(want, have)
    if want == nil then return true end
    if type(want) == "table" then
      for _, w in ipairs(want) do if w == have then return true end end
      return false
    end
    return want == have
  end
  if not (name(m.iifname, p.iif) and name(m.oifname, p.oif)) then return false end
  if m.ct_state and not value(type(m.ct_state) == "table" and m.ct_state or { m.ct_state }, p.ct) then
    return false
  end
  if not (addr(m.ip_daddr, p.daddr, 4) and addr(m.ip6_daddr, p.daddr, 6)) then return false end
  if not (addr(m.ip_saddr, p.saddr, 4) and addr(m.ip6_saddr, p.saddr, 6)) then return false end
  if m.tcp_dport and (p.l4proto ~= "tcp" or not value(m.tcp_dport, p.dport)) then return false end
  if m.udp_dport and (p.l4proto ~= "udp" or not value(m.udp_dport, p.dport)) then return false end
  if m.udp_sport and (p.l4proto ~= "udp" or not value(m.udp_sport, p.sport)) then return false end
  if m.icmpv6_type and (p.l4proto ~= "icmpv6" or not value(m.icmpv6_type, p.icmpv6_type)) then
    return false
  end
  return true
end

-- The outcome of chain NAME for packet P: a verdict, "masquerade", or the
-- chain's policy.
local function walk(desc, name, p)
  for _, c in ipairs(desc.chains) do
    if c.name == name then
      for _, r in ipairs(c.rules or {}) do
        if matches(r.match or {}, p) then
          if r.verdict then return r.verdict, r.comment end
          if r.masquerade then return "masquerade", r.comment end
        end
      end
      return c.policy or "accept", "policy"
    end
  end
  error("no chain " .. name)
end

local function nr(ctx) return assert(firewall.from_policy("nr", ctx or NR_CTX)) end

describe("firewall policy, nr, with a routed IPv6 prefix", function()
  local ROUTED = { uplink = "public", range = "10.1.0.0/16", range6 = "fd00:1::/48", wg = "w-abc",
    bridge = "b-abc", routed = "2001:db8:100::/48", routed_subnet = "2001:db8:100:4::/64",
    expose = { { address = "2001:db8:100:4::10", proto = "tcp", port = 8080 },
               { address = "2001:db8:100:7::10", proto = "udp", port = 53 } } }
  local function with(extra)
    local c = {}
    for k, v in pairs(ROUTED) do c[k] = v end
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  it("opens at the entry exactly the exposed ports, of any NR of the network", function()
    local d = nr(with({ entry = true }))
    local function from_internet(daddr, proto, port, ct)
      return (walk(d, "forward", { iif = "public", oif = "w-abc", ct = ct or "new", family = 6,
        saddr = "2001:db8::200", daddr = daddr, l4proto = proto, dport = port }))
    end
    assert.equals("accept", from_internet("2001:db8:100:4::10", "tcp", 8080))
    assert.equals("accept", from_internet("2001:db8:100:7::10", "udp", 53))
    assert.equals("drop", from_internet("2001:db8:100:4::10", "tcp", 8081))
    assert.equals("drop", from_internet("2001:db8:100:4::11", "tcp", 8080))
    assert.equals("drop", from_internet("2001:db8:100:7::10", "tcp", 53))
    assert.equals("accept", from_internet("2001:db8:100:4::11", "tcp", 5555, "established"))
    -- Out without NAT66 for the routed prefix; masqueraded otherwise.
    assert.equals("accept", (walk(d, "postrouting", { oif = "public", family = 6,
      saddr = "2001:db8:100:4::10", daddr = "2001:db8::200" })))
    assert.equals("masquerade", (walk(d, "postrouting", { oif = "public", family = 6,
      saddr = "fd00:1:0:4::10", daddr = "2001:db8::200" })))
  end)

  it("lets only replies and its own exposed ports in from the Internet through the tunnel", function()
    local d = nr(with())
    local function from(saddr, daddr, port, ct)
      return (walk(d, "forward", { iif = "w-abc", oif = "b-abc", ct = ct or "new", family = 6,
        saddr = saddr, daddr = daddr, l4proto = "tcp", dport = port }))
    end
    assert.equals("accept", from("2001:db8::200", "2001:db8:100:4::10", 8080))
    assert.equals("drop", from("2001:db8::200", "2001:db8:100:4::10", 22))
    assert.equals("drop", from("2001:db8::200", "2001:db8:100:4::99", 8080))
    assert.equals("accept", from("2001:db8::200", "2001:db8:100:4::10", 22, "established"))
    -- The network's own prefixes pass, as every mesh traffic does.
    assert.equals("accept", from("2001:db8:100:9::10", "2001:db8:100:4::10", 22))
    assert.equals("accept", from("fd00:1:0:9::10", "2001:db8:100:4::10", 22))
    assert.equals("accept", from("fd00:1:0:9::10", "fd00:1:0:4::10", 22))
    -- Not an entry: its containers' routed traffic is masqueraded when
    -- it breaks out locally (no exit answers).
    assert.equals("masquerade", (walk(d, "postrouting", { oif = "public", family = 6,
      saddr = "2001:db8:100:4::10", daddr = "2001:db8::200" })))
    assert.equals("drop", (walk(d, "forward", { iif = "public", oif = "b-abc", ct = "new", family = 6,
      daddr = "2001:db8:100:4::10", l4proto = "tcp", dport = 8080 })))
  end)

  it("refuses an exposure outside its prefix, naming the field", function()
    local _, err = firewall.from_policy("nr", with({ expose = { { address = "2001:db8:200::10",
      proto = "tcp", port = 1 } } }))
    assert.matches("ctx.expose%[1%].address: IPv6 address in 2001:db8:100::/48 expected", err)
    _, err = firewall.from_policy("nr", with({ entry = true, expose = { { address = "2001:db8:100:4::10",
      proto = "sctp", port = 1 } } }))
    assert.matches("ctx.expose%[1%].proto", err)
  end)
end)

describe("firewall policy, nr", function()
  it("clamps the MSS of TCP SYNs first in the forward chain", function()
    local d = nr()
    assert.equals("pmtu", d.chains[2].rules[1].tcp_mss)
    assert.equals("mss clamp", d.chains[2].rules[1].comment)
  end)

  it("drops anything new from the uplink, into the NR and through it", function()
    local d = nr()
    for _, l4 in ipairs({ { l4proto = "tcp", dport = 22 }, { l4proto = "udp", dport = 53 },
        { l4proto = "icmp" } }) do
      for _, ct in ipairs({ "new", "invalid", "untracked" }) do
        local p = { iif = "public", ct = ct, family = 4, daddr = "10.1.1.2",
          l4proto = l4.l4proto, dport = l4.dport }
        assert.equals("drop", (walk(d, "input", p)), ct .. " " .. l4.l4proto .. " input")
        p.oif = "b-abc"
        assert.equals("drop", (walk(d, "forward", p)), ct .. " " .. l4.l4proto .. " forward")
      end
    end
  end)

  it("lets replies in, and everything out", function()
    local d = nr()
    for _, ct in ipairs({ "established", "related" }) do
      assert.equals("accept", (walk(d, "input", { iif = "public", ct = ct, family = 4 })))
      assert.equals("accept", (walk(d, "forward", { iif = "public", oif = "b-abc", ct = ct, family = 6 })))
    end
    assert.equals("accept", (walk(d, "forward", { iif = "b-abc", oif = "public", ct = "new", family = 4 })))
    assert.equals("accept", (walk(d, "forward", { iif = "w-abc", oif = "b-abc", ct = "new", family = 4 })))
    assert.equals("accept", (walk(d, "input", { iif = "w-abc", ct = "new", family = 4 })))
  end)

  it("drops invalid packets going out of the uplink (they would leave un-NATed)", function()
    local verdict, comment = walk(nr(), "forward", { iif = "b-abc", oif = "public", ct = "invalid", family = 4 })
    assert.equals("drop", verdict)
    assert.equals("forward invalid out", comment)
  end)

  it("allows neighbour discovery on the uplink, not other ICMPv6", function()
    local d = nr()
    for _, t in ipairs({ "nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert" }) do
      assert.equals("accept", (walk(d, "input", { iif = "public", ct = "untracked", family = 6,
        l4proto = "icmpv6", icmpv6_type = t })))
    end
    assert.equals("drop", (walk(d, "input", { iif = "public", ct = "new", family = 6,
      l4proto = "icmpv6", icmpv6_type = "echo-request" })))
  end)

  it("masquerades out of the uplink, except towards the network's own range", function()
    local d = nr({ uplink = "public", range = "10.1.0.0/16", range6 = "fd00:1::/48" })
    assert.equals("masquerade", (walk(d, "postrouting", { oif = "public", family = 4, daddr = "203.0.113.9" })))
    assert.equals("masquerade", (walk(d, "postrouting", { oif = "public", family = 6, daddr = "2001:db8::9" })))
    assert.equals("accept", (walk(d, "postrouting", { oif = "public", family = 4, daddr = "10.1.7.1" })))
    assert.equals("accept", (walk(d, "postrouting", { oif = "public", family = 6, daddr = "fd00:1:0:5::1" })))
    assert.equals("accept", (walk(d, "postrouting", { oif = "w-abc", family = 4, daddr = "203.0.113.9" })))
  end)

  it("follows the uplink name it is given", function()
    local d = nr({ uplink = "up0", range = "10.1.0.0/16" })
    assert.equals("drop", (walk(d, "forward", { iif = "up0", oif = "b", ct = "new", family = 4 })))
    assert.equals("accept", (walk(d, "forward", { iif = "public", oif = "b", ct = "new", family = 4 })))
  end)

  it("names the policy file and line when ctx is incomplete", function()
    local ok, err = firewall.from_policy("nr", { uplink = "public" })
    assert.is_nil(ok)
    assert.matches("policies/firewall%.lua:%d+: ctx%.range: IPv4 prefix expected, got nil", err)
  end)
end)

describe("firewall policy, ndmz", function()
  it("is the same diode, open to the WireGuard ports and (asked) DHCP", function()
    local d = assert(firewall.from_policy("ndmz", { uplink = "public", bridge = "tonrs",
      range = "100.127.0.0/16", wg_ports = { 51820, 51821 }, dhcp = true }))
    local p = { iif = "public", ct = "new", family = 4, l4proto = "udp" }
    p.dport = 51821
    assert.equals("accept", (walk(d, "input", p)))
    p.dport = 51822
    assert.equals("drop", (walk(d, "input", p)))
    p.sport, p.dport = 67, 68
    assert.equals("accept", (walk(d, "input", p)))
    assert.equals("drop", (walk(d, "forward", { iif = "public", oif = "tonrs", ct = "new", family = 4 })))
    assert.equals("accept", (walk(d, "forward", { iif = "public", oif = "tonrs", ct = "established", family = 4 })))
    assert.equals("masquerade", (walk(d, "postrouting", { oif = "public", family = 4, daddr = "203.0.113.1" })))
  end)

  it("masquerades the NRs' IPv6 uplink range, forwards routed prefixes as they are, both ways", function()
    local d = assert(firewall.from_policy("ndmz", { uplink = "public", bridge = "tonrs",
      range = "100.127.0.0/16" }))
    -- Out: an NR's own uplink address (local breakout) is masqueraded, a
    -- routed source is not.
    assert.equals("masquerade", (walk(d, "postrouting", { oif = "public", family = 6,
      saddr = "fd7a:6d65:7368::9", daddr = "2001:db8::200" })))
    assert.equals("accept", (walk(d, "postrouting", { oif = "public", family = 6,
      saddr = "2001:db8:100:4::10", daddr = "2001:db8::200" })))
    -- In: what is routed to an NR passes (the NR decides); nothing new to
    -- the NRs' uplink range, nor anything new over IPv4.
    assert.equals("accept", (walk(d, "forward", { iif = "public", oif = "tonrs", ct = "new", family = 6,
      daddr = "2001:db8:100:4::10", l4proto = "tcp", dport = 22 })))
    assert.equals("drop", (walk(d, "forward", { iif = "public", oif = "tonrs", ct = "new", family = 6,
      daddr = "fd7a:6d65:7368::9" })))
    assert.equals("drop", (walk(d, "forward", { iif = "public", oif = "public", ct = "new", family = 6,
      daddr = "2001:db8:77::1" })))
    -- TCP SYNs are clamped first, before any accept ends the chain.
    assert.equals("pmtu", d.chains[2].rules[1].tcp_mss)
  end)

  it("lets nothing from the NRs reach the ndmz itself, only replies", function()
    local d = assert(firewall.from_policy("ndmz", { uplink = "public", bridge = "tonrs",
      range = "100.127.0.0/16", wg_port_range = { min = 51820, max = 51830 } }))
    for _, proto in ipairs({ "udp", "tcp" }) do
      assert.equals("drop", (walk(d, "input", { iif = "tonrs", ct = "new", family = 4,
        l4proto = proto, dport = 51820 })))
    end
    assert.equals("drop", (walk(d, "input", { iif = "tonrs", ct = "new", family = 6,
      l4proto = "udp", dport = 53 })))
    assert.equals("accept", (walk(d, "input", { iif = "tonrs", ct = "established", family = 4 })))
    -- Routed through the ndmz, out of the uplink: still the NRs' Internet.
    assert.equals("accept", (walk(d, "forward", { iif = "tonrs", oif = "public", ct = "new", family = 4 })))
  end)

  it("has no WireGuard or DHCP openings unless asked", function()
    local d = assert(firewall.from_policy("ndmz", { uplink = "public", bridge = "tonrs" }))
    local text = firewall.render(d)
    assert.not_matches("dport", text, 1, true)
    assert.equals("drop", (walk(d, "input", { iif = "public", ct = "new", family = 4, l4proto = "udp",
      sport = 67, dport = 68 })))
  end)
end)

describe("firewall.from_policy", function()
  it("takes a farmer's policy from an earlier directory", function()
    local d = assert(firewall.from_policy("nr", NR_CTX, { path = { root .. "/tests/fixtures/nft/policies/open" } }))
    assert.equals("drop", d.chains[1].policy)
    assert.equals("ssh", d.chains[1].rules[2].comment)
  end)

  it("reports a policy that returns an invalid ruleset, with its file", function()
    local ok, err = firewall.from_policy("nr", NR_CTX, { path = { root .. "/tests/fixtures/nft/policies/broken" } })
    assert.is_nil(ok)
    assert.matches("broken/firewall.lua:%d+: policy firewall: hook nr returned an invalid ruleset: "
      .. "chains%[1%]%.rules%[1%]: unknown field 'verdcit'", err)
    ok, err = firewall.from_policy("ndmz", {}, { path = { root .. "/tests/fixtures/nft/policies/broken" } })
    assert.is_nil(ok)
    assert.matches("broken/firewall.lua:%d+: ndmz is not for this farm %(in policy firewall, hook ndmz%)", err)
  end)

  it("gives a kept ruleset only while the policy's text and the context are the same", function()
    local dir = require("tmpdir")()
    finally(function() os.execute("rm -rf " .. dir) end)
    local function policy(verdict)
      local f = assert(io.open(dir .. "/firewall.lua", "w"))
      f:write(([[return { name = "firewall", version = 1,
        nr = function(ctx) return { table = "zmesh", chains = { { name = "input", type = "filter", hook = "input",
          policy = "%s", rules = { { match = { iifname = ctx.uplink }, verdict = "accept" } } } } } end,
        ndmz = function() return { table = "zmesh", chains = {} } end }]]):format(verdict))
      f:close()
    end
    policy("drop")
    local a = assert(firewall.from_policy("nr", { uplink = "public" }, { path = { dir } }))
    assert.equals("drop", a.chains[1].policy)
    a.chains[1].policy = "changed by a caller"
    local b = assert(firewall.from_policy("nr", { uplink = "public" }, { path = { dir } }))
    assert.equals("drop", b.chains[1].policy)
    assert.equals("eth9", assert(firewall.from_policy("nr", { uplink = "eth9" }, { path = { dir } }))
      .chains[1].rules[1].match.iifname)
    policy("accept")
    assert.equals("accept", assert(firewall.from_policy("nr", { uplink = "public" }, { path = { dir } }))
      .chains[1].policy)
  end)

  it("knows only the nr and ndmz roles", function()
    local ok, err = firewall.from_policy("host", {})
    assert.is_nil(ok)
    assert.equals('unknown firewall role "host" (nr, ndmz)', err)
  end)
end)
