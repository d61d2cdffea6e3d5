-- `zmesh demo`: a simulated mesh of several nodes, end to end, on this
-- machine. Every node is its own set of namespaces on a simulated Internet
-- of documentation addresses; the machine's own network is never touched.
local mesh = require "zmesh.sim.mesh"
local sim = require "zmesh.sim"

local function say(...) io.stdout:write(...) io.stdout:write("\n") io.stdout:flush() end

local function indent(text) return "    " .. text:gsub("\n", "\n    ") end

local function section(title) say("\n== ", title) end

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
    section("An aggregator's node dies; the user re-renders, the nodes re-apply")
    local agg
    for _, p in ipairs(N.configs.n4.peers) do if #p.allowed_ips > 0 then agg = p.node_id end end
    F:kill(agg)
    say("  ", agg, " is down: n4 reaches n5? ", N:ping("n4", "n5", 4) and "yes" or "no")
    local t0 = sim.now()
    N:remove_node(agg)
    N:deploy()
    local result, failures, ids = N:matrix(4)
    say(string.format("  healed in %.2f s (re-render, re-apply, all pairs checked):", sim.now() - t0))
    say(N:format_matrix(result, ids))
    if failures > 0 then error("the mesh did not heal", 0) end
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
the Internet diode, a sole exit, and healing after an aggregator's node
dies. Everything is removed at the end. Needs root.]],
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
