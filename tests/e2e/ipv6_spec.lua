-- IPv6 towards the Internet, in the simulated fleet (three public nodes
-- with IPv4 and IPv6, two hidden behind NAT, one public with an IPv6-only
-- uplink): a routed /48 for the network, routed by the simulated
-- Internet to the exit node; containers on public and hidden nodes reach
-- an IPv6 server that sees their own global addresses; an exposed port is
-- reachable from the Internet, an unexposed one and every other container
-- are not; switching the exit moves the entry point (the Internet's route
-- follows, as a provider's would). An IPv6-only node's container reaches
-- the IPv6 Internet by local breakout. Nothing is left afterwards.
local lan = require "zmesh.sim.lan"
local mesh = require "zmesh.sim.mesh"
local sim = require "zmesh.sim"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local ROUTED = "2001:db8:100::/48"
local SERVER6 = "2001:db8::200"

local function say(...) io.stdout:write("\n# ", ...) io.stdout:flush() end

describe("IPv6 to and from the Internet", function()
  local S, F, N, server_ns, pids = nil, nil, nil, nil, {}

  -- What the IPv6 server answers a connection from ID's container (the
  -- source address it saw), or nil and the probe's word.
  local function seen6(net, id)
    local out, ok = S:exec(id, net.containers[id].netns, "python3 " .. sim.peer_py .. " probe tcp "
      .. SERVER6 .. " 8080 3")
    if ok then return out end
    return nil, out
  end

  -- What the Internet server gets connecting to ADDRESS PORT.
  local function from_internet(address, port)
    return (sim.sh("ip netns exec " .. server_ns .. " python3 " .. sim.peer_py .. " probe tcp " .. address
      .. " " .. port .. " 1.5"))
  end

  local function routed_of(net, id)
    return (net.configs[id].routed_ipv6_subnet:gsub("/64$", "10"))
  end

  setup(function()
    S = sim.new { prefix = "zt" .. testns.run_id .. "6-", bin = BIN, backend = "userspace" }
    F = mesh.build(S)
    lan.internet6(S)
    -- n6: public, its uplink IPv6 only.
    S:node { id = "n6", addr = "203.0.113.16/24" }
    lan.v6only(S, "n6", "2001:db8::16/64")
    assert(S:call("n6", "node.start", {}))
    server_ns = lan.host6(S, "srv6", "203.0.113.201/24", SERVER6 .. "/64")
    pids[#pids + 1] = tonumber((sim.sh("ip netns exec " .. server_ns .. " python3 " .. sim.peer_py
      .. " serve 8080 >/dev/null 2>&1 & echo $!")))
    N = F:network { name = "routed", id = "rt1", range = "10.2.0.0/16", range6 = "fd00:2::/48", tag = "r" }
    N:define({ "n1", "n2", "n3", "n4", "n5" })
    N:net("set-routed-ipv6 routed.json " .. ROUTED)
    N:net("set-exit routed.json n1 n2")
    -- The provider routes the prefix to the exit node.
    lan.route6(S, ROUTED, "2001:db8::11")
    N:deploy()
    N:attach()
    -- Every container listens on 8080 and 8081.
    for _, id in ipairs(N.members) do
      for _, port in ipairs({ 8080, 8081 }) do
        S:exec(id, N.containers[id].netns, "sh -c " .. sim.q("python3 " .. sim.peer_py .. " serve " .. port
          .. " >/dev/null 2>&1 &"))
      end
    end
    sim.sh("sleep 0.5")
  end)

  teardown(function()
    for _, pid in ipairs(pids) do if pid then sim.sh("kill " .. pid .. " 2>/dev/null") end end
    if F then F:destroy() end
    if S then
      S:destroy()
      assert.same({}, S:leftovers())
    end
  end)

  it("gives every NR a /64 of the routed prefix, its containers an address in it", function()
    for i, id in ipairs(N.members) do
      assert.equal(string.format("2001:db8:100:%d::/64", i), N.configs[id].routed_ipv6_subnet)
      local out = S:exec(id, N.containers[id].netns, "ip -6 addr show dev eth0")
      assert.matches(routed_of(N, id) .. "/64", out, 1, true)
    end
    -- The exit's ndmz routes the prefix into its NR.
    assert.matches(ROUTED .. " via fd7a:6d65:7368::", (S:exec("n1", "ndmz", "ip -6 route")), 1, true)
  end)

  it("lets every container out to the IPv6 Internet with its own global address, no NAT66", function()
    for _, id in ipairs(N.members) do
      local saw, why = seen6(N, id)
      if saw ~= routed_of(N, id) then saw, why = seen6(N, id) end
      assert.equal(routed_of(N, id), saw, id .. ": " .. tostring(why))
    end
  end)

  it("opens exactly the exposed port of one container, and nothing else", function()
    local target = routed_of(N, "n4")
    -- The diode before: nothing from the Internet.
    assert.equal("TIMEOUT", from_internet(target, 8080))
    N:net("expose routed.json n4 " .. target .. " 8080/tcp")
    N:deploy()
    local got = from_internet(target, 8080)
    if got ~= SERVER6 then got = from_internet(target, 8080) end
    -- The container sees the Internet server's own address.
    assert.equal(SERVER6, got)
    assert.equal("TIMEOUT", from_internet(target, 8081))
    for _, id in ipairs(N.members) do
      if id ~= "n4" then assert.equal("TIMEOUT", from_internet(routed_of(N, id), 8080), id) end
    end
    local _, ping = sim.sh("ip netns exec " .. server_ns .. " ping -6 -c 1 -W 1 " .. target)
    assert.is_false(ping)
    -- Both ends enforce it: the exit NR and n4's NR.
    local exit_rules = S:exec("n1", "n-rt1", "nft list chain inet zmesh forward")
    local own_rules = S:exec("n4", "n-rt1", "nft list chain inet zmesh forward")
    assert.matches('iifname "public" ip6 daddr ' .. target .. ' tcp dport 8080 accept', exit_rules, 1, true)
    assert.matches('iifname "w-rt1" ip6 daddr ' .. target .. ' tcp dport 8080 accept', own_rules, 1, true)
  end)

  it("moves the entry point with the exit", function()
    local target = routed_of(N, "n4")
    N:net("set-exit routed.json n2")
    N:deploy()
    -- The provider's route follows the exit.
    lan.route6(S, ROUTED, "2001:db8::12")
    assert.matches(ROUTED .. " via fd7a:6d65:7368::", (S:exec("n2", "ndmz", "ip -6 route")), 1, true)
    -- n1 is no exit candidate any more: its ndmz routes the prefix nowhere.
    assert.not_matches(ROUTED, (S:exec("n1", "ndmz", "ip -6 route")), 1, true)
    local got = from_internet(target, 8080)
    if got ~= SERVER6 then got = from_internet(target, 8080) end
    assert.equal(SERVER6, got)
    assert.equal("TIMEOUT", from_internet(routed_of(N, "n3"), 8080))
    for _, id in ipairs(N.members) do
      local saw = seen6(N, id)
      if saw ~= routed_of(N, id) then saw = seen6(N, id) end
      assert.equal(routed_of(N, id), saw, id)
    end
    say("entry point moved from n1 to n2: the exposed port answers through n2, every container leaves there")
  end)

  it("breaks out locally on an IPv6-only node, masqueraded, the diode in both chains", function()
    local P = F:network { name = "plain", id = "pl1", range = "10.3.0.0/16", range6 = "fd00:3::/48",
      first_port = 52700, tag = "p" }
    P:define({ "n1", "n6" })
    P:deploy()
    P:attach()
    -- The tunnel between them runs over IPv6 (n6 has nothing else).
    assert.matches("%[2001:db8::16%]:", (S:sh("n1", "wg show w-pl1 endpoints")))
    assert.is_true(P:ping("n6", "n1", 4))
    assert.is_true(P:ping("n1", "n6", 6))
    local saw = seen6(P, "n6")
    if saw ~= "2001:db8::16" then saw = seen6(P, "n6") end
    assert.equal("2001:db8::16", saw)
    assert.equal("2001:db8::11", seen6(P, "n1"))
    -- Nothing new gets in: not to the node, not through it.
    S:exec("n6", "ndmz", "sh -c " .. sim.q("python3 " .. sim.peer_py .. " serve 9090 >/dev/null 2>&1 &"))
    sim.sh("sleep 0.3")
    assert.equal("TIMEOUT", from_internet("2001:db8::16", 9090))
    local counters = S:exec("n6", "n-pl1", "nft list chain inet zmesh postrouting")
    assert.matches("masquerade", counters, 1, true)
    local _, v4 = S:exec("n6", P.containers.n6.netns, "ping -4 -c 1 -W 1 203.0.113.201")
    assert.is_false(v4, "an IPv6-only node has no IPv4 Internet")
  end)
end)
