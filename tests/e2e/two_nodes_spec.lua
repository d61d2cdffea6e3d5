-- The walking skeleton end to end: two simulated nodes, an encrypted ping
-- between their containers, `wg show` in each node's own context, and a
-- teardown that leaves nothing, also after a failure half-way.
local sim = require "zmesh.sim"
local testns = require "testns"
local two_nodes = require "zmesh.sim.two_nodes"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"

local function new_sim(tag)
  return sim.new { prefix = "zt" .. testns.run_id .. tag .. "-", bin = BIN, backend = "userspace" }
end

-- {public key → {handshake age, rx, tx}} from `wg show w-… dump`.
local function wg_peers(S, node)
  local out, ok = S:sh(node, "wg show w-" .. two_nodes.NET_ID .. " dump")
  assert(ok, out)
  local peers, first = {}, true
  for line in out:gmatch("[^\n]+") do
    if first then first = false else
      local f = {}
      for x in line:gmatch("[^\t]+") do f[#f + 1] = x end
      peers[f[1]] = { handshake = tonumber(f[5]), rx = tonumber(f[6]), tx = tonumber(f[7]) }
    end
  end
  return peers
end

describe("two simulated nodes", function()
  it("ping from container to container through the tunnel, and leave nothing", function()
    local S = new_sim("a")
    finally(function()
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    local configs = two_nodes.build(S)

    -- wireguard-go notices its link is up by polling once a second (it
    -- lives in another namespace than its link): pings span two seconds.
    local out, ok = S:exec("n1", "c1", "ping -c 5 -i 0.5 -W 2 10.1.2.10")
    assert.is_true(ok, out)
    assert.matches("[1-5] received", out)
    out, ok = S:exec("n2", "c2", "ping -c 5 -i 0.5 -W 2 10.1.1.10")
    assert.is_true(ok, out)

    -- The real wg, in each node's own /run, sees a recent handshake and
    -- bytes both ways.
    for _, n in ipairs(two_nodes.nodes) do
      local other = n.id == "n1" and "n2" or "n1"
      local peers = wg_peers(S, n.id)
      local p = peers[configs[other].wireguard_public_key]
      assert.truthy(p, n.id .. " has no peer " .. other)
      local age = os.time() - p.handshake
      assert.is_true(p.handshake > 0 and age < 30, "handshake age " .. age)
      assert.is_true(p.rx > 0 and p.tx > 0)
    end

    -- The containers' traffic is inside the tunnel: not routed in the clear.
    local route = S:sh("n1", "ip netns exec n-" .. two_nodes.NET_ID .. " ip route get 10.1.2.10")
    assert.matches("dev w-" .. two_nodes.NET_ID, route, 1, true)

    -- A second apply of the same config changes nothing.
    local plan = assert(S:call("n1", "nr.plan", configs.n1))
    assert.same({}, plan.changes)

    -- A dead daemon is found by nr.check and restarted with its config.
    -- (The daemons of n2: those in n2's mount namespace.)
    local function daemon()
      return (S:sh("n2", "pgrep -x wireguard-go --nslist mnt --ns " .. S.nodes.n2.pid))
    end
    local pid = daemon()
    assert.matches("^%d+$", pid)
    S:sh("n2", "kill -9 " .. pid)
    local checked = assert(S:call("n2", "nr.check", {}))
    assert.same({ two_nodes.NET_ID }, checked.restarted)
    assert.matches("^%d+$", daemon())
    assert.not_equal(pid, daemon())
    -- The restarted side has no session: its first packet makes one (the
    -- other side alone would wait for WireGuard's rekey timeout). The new
    -- daemon sees its link up within a second (it polls), and a lost first
    -- handshake is retried after 5 s: one retry covers both.
    out, ok = S:sh("n2", "ip netns exec c2 ping -c 1 -W 5 10.1.1.10 || ip netns exec c2 ping -c 3 -W 3 10.1.1.10")
    assert.is_true(ok, out)
    out, ok = S:exec("n1", "c1", "ping -c 1 -W 2 10.1.2.10")
    assert.is_true(ok, out)
    assert.same({}, assert(S:call("n2", "nr.check", {})).restarted)

    -- node.stop removes everything the node made, processes included.
    local stopped = assert(S:call("n1", "node.stop", {}))
    assert.same({ two_nodes.NET_ID }, stopped.nrs_removed)
    -- The container's namespace is its runtime's: it stays, its link is
    -- gone with the NR by the time the stop returns.
    assert.equal("c1", S:sh("n1", "ip netns list"))
    assert.equal("lo", (S:sh("n1", "ip -n c1 -o link show | awk -F': ' '{print $2}'")))
    assert.equal("", S:sh("n1", "ls /run/wireguard"))
    local detached = assert(S:call("n2", "container.detach",
      { net_id = two_nodes.NET_ID, netns = "c2", delete = true }))
    assert.is_true(detached.detached)
    assert.equal("n-" .. two_nodes.NET_ID .. "\nndmz", S:sh("n2", "ip netns list | LC_ALL=C sort"))
  end)

  it("leaves nothing when a run fails half-way", function()
    local S = new_sim("b")
    local destroyed = false
    finally(function()
      -- Also when an assertion below fails.
      if not destroyed then S:destroy() end
    end)
    local ok, err = pcall(function()
      S:internet()
      S:node { id = "n1", addr = "203.0.113.11/24" }
      assert(S:call("n1", "node.start", {}))
      -- A config sealed for no node: the apply must fail.
      local bad = { net_id = "half1", ip_range = "10.1.0.0/16", subnet = "10.1.1.0/24",
        wireguard_private_key = "AAAA", wireguard_listen_port = 51820, peers = {} }
      local res, msg = S:call("n1", "nr.apply", bad)
      if res ~= nil or not msg:find("wireguard_private_key", 1, true) then
        error("nr.apply did not refuse the bad key: " .. tostring(msg), 0)
      end
      error("stopping half-way on purpose", 0)
    end)
    assert.is_false(ok)
    assert.equal("stopping half-way on purpose", err)
    S:destroy()
    destroyed = true
    assert.same({}, S:leftovers())
  end)
end)

describe("the Internet diode on simulated nodes", function()
  it("lets containers out masqueraded and nothing new in", function()
    local S = sim.new { prefix = "zt" .. testns.run_id .. "d-", bin = BIN, backend = "userspace" }
    local server_pid
    finally(function()
      if server_pid then testns.sh("kill " .. server_pid) end
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    two_nodes.build(S)
    -- Absolute: commands inside a node run from its root directory.
    local peer = testns.sh("realpath " .. sim.peer_py)
    local server = S:host("srv", "203.0.113.200/24")
    server_pid = tonumber((testns.sh("ip netns exec " .. server .. " python3 " .. peer
      .. " serve 8080 >/dev/null 2>&1 & echo $!")))
    testns.sh("sleep 0.3")
    -- Out: the server sees the node's public address (NR, then ndmz, masquerade).
    local out, ok = S:exec("n1", "c1", "python3 " .. peer .. " probe tcp 203.0.113.200 8080 3")
    assert.is_true(ok, out)
    assert.equal("203.0.113.11", out)
    out, ok = S:exec("n1", "c1", "python3 " .. peer .. " probe udp 203.0.113.200 8080 3")
    assert.is_true(ok, out)
    assert.equal("203.0.113.11", out)
    -- In: an attacker that routes the NRs' ranges at the node gets nowhere.
    assert(testns.sh("ip -n " .. server .. " route add 100.127.0.0/16 via 203.0.113.11"))
    assert(testns.sh("ip -n " .. server .. " route add 10.1.0.0/16 via 203.0.113.11"))
    S:exec("n1", "c1", "python3 " .. peer .. " serve 9090 >/dev/null 2>&1 &")
    for _, target in ipairs({ "203.0.113.11", "100.127.0.2", "10.1.1.10" }) do
      out, ok = testns.exec(server, "ping -c 1 -W 1 " .. target)
      assert.is_false(ok, "ping " .. target .. " got through")
      out, ok = testns.exec(server, "python3 " .. peer .. " probe tcp " .. target .. " 9090 1")
      assert.is_false(ok, "tcp to " .. target .. " got through: " .. out)
      out, ok = testns.exec(server, "python3 " .. peer .. " probe udp " .. target .. " 9090 1")
      assert.is_false(ok, "udp to " .. target .. " got through: " .. out)
    end
    -- The tunnel itself still works: WireGuard's ports are open.
    out, ok = S:exec("n2", "c2", "ping -c 1 -W 2 10.1.1.10")
    assert.is_true(ok, out)
  end)
end)
