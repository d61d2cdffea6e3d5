-- `zmesh demo`: a simulated mesh, end to end, on this machine. Every node
-- is its own set of namespaces on a simulated Internet of documentation
-- addresses; the machine's own network is never touched.
local sim = require "zmesh.sim"
local two_nodes = require "zmesh.sim.two_nodes"

local function say(...) io.stdout:write(...) io.stdout:write("\n") io.stdout:flush() end

local function show(title, out)
  say("\n--- ", title)
  say((out:gsub("\n", "\n    "):gsub("^", "    ")))
end

return {
  summary = "run a simulated mesh of several nodes end to end (needs root)",
  usage = "[--keep]",
  help = [[
Builds simulated nodes (each its own mount and network namespaces) on a
simulated Internet (documentation addresses only, no link to this machine's
network), brings up their ndmz and NRs with real WireGuard (wireguard-go),
attaches a container to each NR, shows traffic crossing the tunnels and what
`wg show` says on each node, then removes everything. Needs root.]],
  run = function()
    local S = sim.new { prefix = "zdemo" .. string.format("%04x", math.random(0, 0xffff)) .. "-",
      backend = "userspace" }
    local ok, err = xpcall(function()
      say("Zero-Mesh demo: two nodes, one user network 10.1.0.0/16\n")
      two_nodes.build(S, function(line) say("  ", line) end)
      for _, n in ipairs(two_nodes.nodes) do
        local other = n.id == "n1" and two_nodes.nodes[2] or two_nodes.nodes[1]
        local out, good = S:exec(n.id, n.container, "ping -c 3 -i 0.2 -W 2 " .. other.ip)
        show(string.format("%s: container %s (%s) pings %s on %s through the tunnel: %s",
          n.id, n.container, n.ip, other.ip, other.id, good and "OK" or "FAILED"), out)
        if not good then error("ping failed", 0) end
      end
      show("n1: wg show (in n1's own /run)", (S:sh("n1", "wg show")))
    end, debug.traceback)
    say("\nTearing down…")
    S:destroy()
    local left = S:leftovers()
    if #left > 0 then say("left behind: ", table.concat(left, ", ")) end
    if not ok then
      io.stderr:write("zmesh demo: ", tostring(err), "\n")
      return 1
    end
    say("Done: every namespace, link and process of the demo is gone.")
    return 0
  end,
}
