-- `zmesh demo`: a simulated mesh of several nodes, end to end, on this
-- machine. Every node is its own set of namespaces on a simulated Internet
-- of documentation addresses; the machine's own network is never touched.
local mesh = require "zmesh.sim.mesh"
local sim = require "zmesh.sim"

local function say(...) io.stdout:write(...) io.stdout:write("\n") io.stdout:flush() end

local function indent(text) return "    " .. text:gsub("\n", "\n    ") end

local function section(title) say("\n== ", title) end

-- Every live container pings every other, in parallel per node: true, or
-- false and how many pairs failed.
local function all_reach(S, N, ids)
  local failed = 0
  for _, from in ipairs(ids) do
    local cmds = {}
    for _, to in ipairs(ids) do
      if to ~= from then
        cmds[#cmds + 1] = "(ping -c 1 -W 1 " .. N.containers[to].ip .. " >/dev/null || echo NO) &"
      end
    end
    local out = S:exec(from, N.containers[from].netns, "sh -c " .. sim.q(table.concat(cmds, " ") .. " wait"))
    for _ in out:gmatch("NO") do failed = failed + 1 end
  end
  return failed == 0, failed
end

-- The aggregator node ID's NR routes through now, from its daemon.
local function upstream(S, id, net_id)
  local _, st = S:api(id, "GET", "/v1/status")
  local nr = type(st) == "table" and st.nrs and st.nrs[net_id]
  return nr and nr.failover and nr.failover.aggregator
end

local function story(S)
  section("Five nodes on a simulated Internet")
  local F = mesh.build(S, { log = function(l) say("  ", l) end })
  local ok, err = pcall(function()
    section("A user defines network 'demo' and renders one NR config per node (no root)")
    local N = F:network { name = "demo", id = "demo1", range = "10.1.0.0/16", range6 = "fd00:1::/48" }
    N.log = function(l) say("  ", l) end
    N:define({ "n1", "n2", "n3", "n4", "n5" })
    say(indent(N:net("show demo.json")))
    section("Each node applies its own NR config; a container joins each NR")
    N:deploy()
    N:attach()
    for _, id in ipairs(N.members) do
      local c = N.containers[id]
      say(string.format("  %s: container %s at %s and %s", id, c.netns, c.ip, c.ip6))
    end
    section("Every container pings every other, through WireGuard")
    for _, family in ipairs({ 4, 6 }) do
      local result, failures, ids = N:matrix(family)
      say("  IPv", family, ": ", failures == 0 and "all pairs reach each other" or (failures .. " pairs FAIL"))
      say(N:format_matrix(result, ids))
      if failures > 0 then error("reachability failed", 0) end
    end
    section("n4 is hidden behind a NAT: its peers are its aggregators (`wg show` on n4)")
    say(indent((S:sh("n4", "wg show w-demo1"))))
    section("The Internet diode: containers get out masqueraded, nothing new gets in")
    F:start_server()
    for _, id in ipairs(N.members) do
      say(string.format("  %s's container reaches %s, which sees it as %s", id, mesh.server,
        tostring(N:seen_from(id))))
    end
    local inbound = F:server_reaches("203.0.113.11")
    say("  the server pinging n1's uplink: ", inbound and "ANSWERED (wrong)"
      or "no answer (dropped by the diode)")
    if inbound then error("the diode let a ping in", 0) end
    section("n2 becomes the sole Internet exit of the network")
    N:net("set-exit demo.json n2")
    N:deploy()
    for _, id in ipairs(N.members) do
      say(string.format("  %s's container is seen by the server as %s", id, tostring(N:seen_from(id))))
    end
    N:net("set-exit demo.json none")
    N:deploy()
    section("Each node runs its agent, `zmesh daemon`: the only writer, an API on a unix socket")
    for _, id in ipairs(N.members) do S:daemon_start(id) end
    -- Its first probes decide what it routes through.
    local t_up = sim.now()
    while not upstream(S, "n4", "demo1") and sim.now() - t_up < 15 do sim.sh("sleep 0.2") end
    local _, st = S:api("n4", "GET", "/v1/status")
    say("  $ curl --unix-socket /run/zmesh/zmesh.sock http://zmesh/v1/status   (on n4)")
    say(string.format("  node %s, NR demo1 %s, routing through aggregator %s; probing %s",
      st.node_id, st.nrs.demo1.state, tostring(upstream(S, "n4", "demo1")),
      table.concat(st.nrs.demo1.failover.probing, ", ")))
    section("An aggregator's node dies: the daemons move its traffic on their own")
    local agg = upstream(S, "n4", "demo1")
    local rest = {}
    for _, id in ipairs(N.members) do if id ~= agg then rest[#rest + 1] = id end end
    S:cable(agg, false)
    local t0 = sim.now()
    say("  ", agg, "'s cable is pulled; nothing is re-rendered, no one acts")
    while not all_reach(S, N, rest) do
      if sim.now() - t0 > 30 then error("the mesh did not heal", 0) end
    end
    say(string.format("  all pairs of %s reach each other again %.1f s later; n4 now routes through %s",
      table.concat(rest, ", "), sim.now() - t0, tostring(upstream(S, "n4", "demo1"))))
    say(indent((S:sh("n4", "grep 'traffic moves' /run/zmesh-daemon.log | tail -1"))))
    section("It comes back: traffic returns once it has answered for the hold time")
    S:cable(agg, true)
    t0 = sim.now()
    while upstream(S, "n4", "demo1") ~= agg do
      if sim.now() - t0 > 60 then error("traffic did not come back", 0) end
      sim.sh("sleep 0.2")
    end
    say(string.format("  n4 routes through %s again, %.1f s after its cable was back", agg, sim.now() - t0))
    -- The others hear of it within a probe or two.
    local ok_all, t_ok = false, sim.now()
    repeat ok_all = all_reach(S, N, N.members) until ok_all or sim.now() - t_ok > 5
    say("  all pairs: ", ok_all and "ok" or "NOT all")
    if not ok_all then error("not every pair reaches every other after the return", 0) end
  end)
  F:destroy()
  if not ok then error(err, 0) end
end

return {
  summary = "run a simulated mesh of several nodes end to end (needs root)",
  usage = "",
  help = [[
Builds five simulated nodes (each its own mount and network namespaces:
three public, two hidden behind NAT routers) on a simulated Internet of
documentation addresses with no link to this machine's network. Each node
brings up its ndmz; a user network is defined and rendered with `zmesh net`;
each node applies its NR config with real WireGuard (wireguard-go here);
containers join; then it shows all-pairs reachability over IPv4 and IPv6,
the Internet diode, a sole exit; then every node runs its daemon, and when
an aggregator's node dies the daemons move its traffic to the standby on
their own, and back once it returns. Everything is removed at the end.
Needs root.]],
  run = function()
    local S = sim.new { prefix = "zdemo" .. string.format("%04x", math.random(0, 0xffff)) .. "-",
      backend = "auto" }
    local ok, err = xpcall(story, debug.traceback, S)
    say("\n== Tearing down")
    S:destroy()
    local left = S:leftovers()
    if #left > 0 then say("  left behind: ", table.concat(left, ", ")) end
    if not ok then
      io.stderr:write("zmesh demo: ", tostring(err), "\n")
      return 1
    end
    say("  every namespace, link and process of the demo is gone")
    return 0
  end,
}
