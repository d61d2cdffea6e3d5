-- A user network across five simulated nodes (three public, two hidden
-- behind NAT routers), defined and rendered with `zmesh net`, applied by
-- each node: all-pairs reachability over IPv4 and IPv6, the Internet diode,
-- a sole exit, two users' networks with the same addresses on the same
-- nodes, and an aggregator's node dying. Nothing is left afterwards.
local json = require "zmesh.json"
local mesh = require "zmesh.sim.mesh"
local sim = require "zmesh.sim"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"

local function say(...) io.stdout:write("\n# ", ...) io.stdout:flush() end

describe("a mesh of five simulated nodes", function()
  local S, F, N

  setup(function()
    S = sim.new { prefix = "zt" .. testns.run_id .. "m-", bin = BIN, backend = "userspace" }
    F = mesh.build(S)
    N = F:network { name = "demo", id = "demo1", range = "10.1.0.0/16", range6 = "fd00:1::/48" }
    N:define({ "n1", "n2", "n3", "n4", "n5" })
    N:deploy()
    N:attach()
    F:start_server()
  end)

  teardown(function()
    if F then F:destroy() end
    S:destroy()
    assert.same({}, S:leftovers())
  end)

  it("every container reaches every other, over IPv4 and IPv6", function()
    for _, family in ipairs({ 4, 6 }) do
      local result, failures, ids = N:matrix(family)
      if failures > 0 then say("IPv", family, "\n", N:format_matrix(result, ids)) end
      assert.equal(0, failures)
      assert.equal(20, #ids * (#ids - 1))
    end
  end)

  it("has the topology of the design: hidden NRs peer only with aggregators", function()
    local public = { n1 = true, n2 = true, n3 = true }
    for _, id in ipairs({ "n4", "n5" }) do
      local cfg = N.configs[id]
      for _, p in ipairs(cfg.peers) do
        assert.is_true(public[p.node_id], id .. " peers with " .. p.node_id)
        assert.equal(25, p.persistent_keepalive)
        assert.truthy(p.endpoint)
      end
      -- The real wg on the hidden node: every peer is a public node's ndmz
      -- (over IPv4: the hidden node has no IPv6).
      local out = S:sh(id, "wg show w-demo1 endpoints")
      local n = 0
      for line in out:gmatch("[^\n]+") do
        assert.matches("\t203%.0%.113%.1[123]:%d+$", line)
        n = n + 1
      end
      assert.equal(#cfg.peers, n)
    end
    -- Public nodes use IPv6 endpoints between themselves (both have it).
    assert.matches("%[2001:db8::1[23]%]:", (S:sh("n1", "wg show w-demo1 endpoints")))
  end)

  it("lets containers out through their own node, masqueraded", function()
    local expect = { n1 = "203.0.113.11", n2 = "203.0.113.12", n3 = "203.0.113.13",
      n4 = "203.0.113.101", n5 = "203.0.113.102" }
    for id, addr in pairs(expect) do
      assert.equal(addr, N:seen_from(id))
    end
  end)

  it("sends everything through the sole exit when one is set, and back", function()
    N:net("set-exit demo.json n2")
    N:deploy()
    for _, id in ipairs({ "n1", "n2", "n3", "n4", "n5" }) do
      assert.equal("203.0.113.12", N:seen_from(id), id .. " did not leave through n2")
    end
    local _, failures = N:matrix(4)
    assert.equal(0, failures)
    -- `zmesh node check`: the Internet goes to the exit (through the
    -- hidden NR's aggregator); a hidden NR's containers are reached
    -- through its primary aggregator, whatever peer the probe took; the
    -- round trips come in fine steps (not /proc/uptime's 10 ms).
    local function check_of(id)
      local out, ok = S:sh(id, BIN .. " node check --json")
      assert.is_true(ok, out)
      return json.decode(out)[1]
    end
    local r4, r1 = check_of("n4"), check_of("n1")
    assert.matches("^via n2", r4.internet)
    assert.equal("via n2", r1.internet)
    local primary = N.configs.n5.failover.nodes.n5.aggregators[1]
    assert.equal(primary == "n1" and "direct" or ("via " .. primary), r1.peers.n5.path)
    local fine = 0
    for _, r in ipairs({ r1, r4 }) do
      for id, p in pairs(r.peers) do
        assert.is_true(p.reachable, r.node_id .. " → " .. id)
        if math.abs(p.rtt_ms / 10 - math.floor(p.rtt_ms / 10 + 0.5)) > 0.001 then fine = fine + 1 end
      end
    end
    assert.is_true(fine > 0, "every round trip a multiple of 10 ms")
    N:net("set-exit demo.json none")
    local changes = N:deploy()
    assert.is_true(changes.n1 > 0)
    assert.equal("203.0.113.11", N:seen_from("n1"))
  end)

  it("keeps two users' networks apart, even with the same addresses on one node", function()
    local O = F:network { name = "other", id = "other1", range = "10.1.0.0/16", first_port = 52800,
      tag = "o" }
    O:define({ "n1", "n2" })
    O:deploy()
    -- Same subnets, same gateways, on the same nodes.
    assert.equal(N.configs.n1.subnet, O.configs.n1.subnet)
    assert.equal(N.configs.n2.subnet, O.configs.n2.subnet)
    O:attach()
    -- O's containers reach each other…
    assert.is_true(O:ping("n1", "n2", 4))
    -- …and the same address seen from each network is that network's own:
    -- N's n1 container reaches N's n2 container at 10.1.2.10, and O's at
    -- the same address reaches O's. Moving O's n2 container's address
    -- away shows which one answered.
    assert(S:exec("n2", "o-n2", "ip addr add 10.1.2.99/24 dev eth0"))
    assert.is_true(O:ping("n1", "n2", 4, "10.1.2.99"))
    assert.is_false(N:ping("n1", "n2", 4, "10.1.2.99"))
    -- Both networks still work as before, side by side.
    assert.is_true(N:ping("n1", "n2", 4))
    assert.is_true(O:ping("n2", "n1", 4))
  end)

  it("heals when an aggregator's node dies: re-rendered, hidden NRs move on", function()
    local function aggregator_of(id)
      for _, p in ipairs(N.configs[id].peers) do
        if #p.allowed_ips > 0 then return p.node_id end
      end
    end
    local agg = aggregator_of("n4")
    assert.truthy(agg)
    F:kill(agg)
    assert.is_false(N:ping("n4", "n5", 4), "hidden-to-hidden still works without " .. agg)
    local t0 = sim.now()
    N:remove_node(agg)
    N:deploy()
    local t1 = sim.now()
    local new = aggregator_of("n4")
    assert.not_equal(agg, new)
    assert.equal(new, aggregator_of("n5"))
    local result, failures2, ids = N:matrix(4)
    if failures2 > 0 then say(N:format_matrix(result, ids)) end
    assert.equal(0, failures2)
    say(string.format("aggregator %s died; re-render and re-apply on 4 nodes took %.2f s, "
      .. "then all %d pairs reached each other through %s (%.2f s)", agg, t1 - t0,
      #ids * (#ids - 1), new, sim.now() - t1))
  end)
end)
