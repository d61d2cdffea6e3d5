-- The uplink by DHCP and router advertisements, served by dnsmasq on
-- simulated LANs: a public segment (documentation space, routed) and the
-- LAN of a hidden node's NAT router. Each node starts with no static
-- address, its daemon supervising udhcpc and rdisc6 in the ndmz; it gets
-- its addresses, keeps them across renewals and a pulled cable, keeps its
-- lease while the server is gone until the lease ends, then gets it back
-- when the server returns; a new reservation moves the public node, its
-- status says its facts changed, and `zmesh net add-node --update` with
-- a re-render brings the mesh back to it. Nothing is left afterwards.
local json = require "zmesh.json"
local lan = require "zmesh.sim.lan"
local mesh = require "zmesh.sim.mesh"
local sim = require "zmesh.sim"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local LEASE = 120   -- dnsmasq's shortest lease, seconds

local function say(...) io.stdout:write("\n# ", ...) io.stdout:flush() end

describe("the uplink by DHCP and router advertisements", function()
  local S, F, N, r1, r5, dm1, dm5
  local bound_at, started = {}, {}

  local function uplink(id)
    local _, st = S:api(id, "GET", "/v1/status")
    return type(st) == "table" and st.uplink or {}
  end

  local function ndmz_addrs(id)
    local out = {}
    for a in (S:exec(id, "ndmz", "ip -o addr show dev public scope global")):gmatch("inet6? (%S+)") do
      out[#out + 1] = a
    end
    table.sort(out)
    return out
  end

  -- Poll FN until true, for up to SECONDS; returns how long it took.
  local function within(seconds, fn, what)
    local t0 = sim.now()
    while sim.now() - t0 < seconds do
      if fn() then return sim.now() - t0 end
      sim.sh("sleep 0.25")
    end
    error(string.format("%s: not within %d s (uplink %s)", what, seconds, json.encode(uplink("n8"))), 2)
  end

  local function dual(id, v4, v6)
    local u = uplink(id)
    local a = u.addresses or {}
    return u.dhcp and u.dhcp.state == "bound" and u.ra and u.ra.state == "ok" and #a == 2
      and a[1]:find(v4, 1, true) == 1 and a[2]:find(v6, 1, true) == 1
  end

  setup(function()
    S = sim.new { prefix = "zt" .. testns.run_id .. "d-", bin = BIN, backend = "userspace" }
    F = mesh.adopt(S)
    S:internet()
    lan.internet6(S)
    r5 = lan.segment(S, "r5", { wan = "203.0.113.105/24", wan6 = "2001:db8::105/64",
      lan = "198.51.100.1/24", lan6 = "2001:db8:5::1/64" })
    dm5 = lan.dnsmasq(S, r5, { range = { "198.51.100.50", "198.51.100.99" }, prefix6 = "2001:db8:5::" })
    r1 = S:nat_router("r1", { wan = "203.0.113.101/24" })
    lan.lan6(S, r1, "fd42:1::1/64")
    dm1 = lan.dnsmasq(S, r1, { range = { r1.lan_prefix .. "50", r1.lan_prefix .. "99" }, prefix6 = "fd42:1::" })
    S:node { id = "n1", addr = "203.0.113.11/24", addr6 = "2001:db8::11/64" }
    assert(S:call("n1", "node.start", {}))
    S:node { id = "n7", behind = "r5" }
    S:node { id = "n8", behind = "r1" }
    for _, id in ipairs({ "n7", "n8" }) do
      lan.dynamic(S, id, { dhcp = true, ra = true, reconcile_interval = 2 })
      S:daemon_start(id)
      started[id] = sim.now()
    end
  end)

  teardown(function()
    if F then F:destroy() end
    if S then
      S:destroy()
      assert.same({}, S:leftovers())
    end
  end)

  it("starts without a static address and gets one by DHCP, one by RA", function()
    local took = {}
    for _, spec in ipairs({ { "n7", "198.51.100.", "2001:db8:5:" }, { "n8", r1.lan_prefix, "fd42:1:" } }) do
      local id = spec[1]
      assert.is_nil(S.nodes[id].config.uplink.addresses)
      within(20, function() return dual(id, spec[2], spec[3]) end, id .. " addresses")
      bound_at[id] = sim.now()
      took[id] = bound_at[id] - started[id]
      assert.same(uplink(id).addresses, ndmz_addrs(id))
      local facts = assert(S:call(id, "node.facts", {}))
      assert.same(uplink(id).addresses, facts.addresses)
      -- A default route from each: DHCP's router, the RA's (link-local).
      assert.matches("default via " .. (spec[2] == "198.51.100." and "198.51.100.1" or r1.gateway),
        (S:exec(id, "ndmz", "ip -4 route")), 1, true)
      assert.matches("default via fe80:", (S:exec(id, "ndmz", "ip -6 route")), 1, true)
    end
    say(string.format("addresses by DHCP and RA %.1f s (public segment) and %.1f s (behind NAT) after the daemon's start",
      took.n7, took.n8))
  end)

  it("joins a network with the addresses it learnt", function()
    N = F:network { name = "dyn", id = "dyn1", range = "10.5.0.0/16", range6 = "fd00:5::/48", tag = "d" }
    N:define({ "n1", "n7", "n8" })
    N:deploy()
    N:attach()
    local result, failures, ids = N:matrix(4)
    if failures > 0 then say(N:format_matrix(result, ids)) end
    assert.equal(0, failures)
    -- n8 is hidden (behind NAT, unique-local IPv6), n7 public.
    local show = json.decode(N:net("show dyn.json --json"))
    local roles = {}
    for _, n in ipairs(show.nodes) do roles[n.node_id] = n.role end
    assert.same({ n1 = "public", n7 = "public", n8 = "hidden" }, roles)
  end)

  it("keeps its address when the cable is pulled and back, renewing at once", function()
    -- n8's server goes away now (its lease runs out later in this file).
    dm1:stop()
    local before = uplink("n7")
    S:cable("n7", false)
    within(5, function() return uplink("n7").carrier == false end, "carrier lost")
    sim.sh("sleep 2")
    assert.same(before.addresses, ndmz_addrs("n7"))
    S:cable("n7", true)
    within(10, function()
      local u = uplink("n7")
      return u.carrier and u.dhcp.renewals > before.dhcp.renewals and u.dhcp.state == "bound"
    end, "renewed after the carrier came back")
    assert.same(before.addresses, ndmz_addrs("n7"))
    assert.equal(0, #uplink("n7").changes - #before.changes)
    assert.is_true(N:ping("n1", "n7", 4))
  end)

  it("reports an address change, and add-node --update with a re-render follows it", function()
    local old = uplink("n7").addresses[1]
    dm5:reconfigure({ hosts = { ["zmesh:n7"] = "198.51.100.77" } })
    -- A cable pulled and back: the client asks, the server refuses the old
    -- lease and hands out the reserved address.
    S:cable("n7", false)
    sim.sh("sleep 1.5")
    S:cable("n7", true)
    local took = within(30, function() return uplink("n7").addresses[1] == "198.51.100.77/24" end,
      "the new address")
    bound_at.n7 = sim.now()
    local u = uplink("n7")
    assert.truthy(u.facts_changed)
    assert.same({ "198.51.100.77/24" }, { u.changes[1].to[1] })
    local log = S:sh("n7", "cat /run/zmesh-daemon.log")
    assert.matches("address changed: [^\n]*→ 198%.51%.100%.77/24", log)
    -- The rendered configs still name the old address (WireGuard may
    -- follow n7 by itself while n7 talks first: roaming; a re-render
    -- makes it the configs'). n8 (behind NAT, no global IPv6) dials n7
    -- over IPv4; n1 over IPv6, which did not change.
    local old_ep = old:match("^[^/]+") .. ":"
    assert.matches(old_ep, json.encode(N.configs.n8.peers), 1, true)
    local v6_ep = json.encode(N.configs.n1.peers):match('"endpoint":"(%[[^"]*)"')
    assert.truthy(v6_ep)
    local out = N:net("add-node dyn.json " .. F:facts("n7") .. " --update")
    assert.matches("changed: addresses: " .. old:gsub("%.", "%%."), out)
    assert.matches("render again and apply", out, 1, true)
    N:deploy()
    assert.not_matches(old_ep, json.encode(N.configs.n8.peers), 1, true)
    assert.matches("198.51.100.77:", json.encode(N.configs.n8.peers), 1, true)
    assert.matches(v6_ep, json.encode(N.configs.n1.peers), 1, true)
    assert.is_true(N:ping("n1", "n7", 4))
    assert.is_true(N:ping("n8", "n7", 4))
    say(string.format("reserved address %s → 198.51.100.77 in %.1f s; re-added, re-rendered, reachable again",
      old, took))
  end)

  it("keeps its lease while the server is gone, loses it at its end, gets it back when it returns", function()
    local addr = uplink("n8").addresses
    -- The renewal (at half the lease) found no server: the lease holds.
    within(LEASE, function() return sim.now() - bound_at.n8 > LEASE / 2 + 5 end, "past the renewal time")
    assert.same(addr, ndmz_addrs("n8"))
    assert.equal("bound", uplink("n8").dhcp.state)
    -- Its end: the addresses go (DHCP and RA both lapse).
    within(LEASE, function() return uplink("n8").dhcp.state == "lost" end, "the lease lost")
    within(LEASE, function() return #ndmz_addrs("n8") == 0 end, "the addresses gone")
    assert.equal(0, #(assert(S:call("n8", "node.facts", {})).addresses))
    say(string.format("n8: the lease held %.0f s after it was bound (its server gone since the first minute), "
      .. "then its addresses went", sim.now() - bound_at.n8))
    -- The server back: the same addresses again, and the mesh with them.
    dm1:start()
    local back = within(30, function() return dual("n8", r1.lan_prefix, "fd42:1:") end, "the lease back")
    assert.same(addr, uplink("n8").addresses)
    within(30, function() return N:ping("n8", "n1", 4) end, "n8 in the mesh again")
    -- Meanwhile n7 renewed its lease by itself, at half its time.
    assert.is_true(sim.now() - bound_at.n7 > LEASE / 2)
    assert.is_true(uplink("n7").dhcp.renewals >= 2)
    assert.equal("198.51.100.77/24", uplink("n7").addresses[1])
    say(string.format("n8: lease back %.1f s after the server returned; n7 renewed %d times",
      back, uplink("n7").dhcp.renewals))
  end)
end)
