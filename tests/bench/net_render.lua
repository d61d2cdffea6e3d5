-- Benchmark: render one node's NR config, and every node's, from a
-- network of 1000 NRs (600 public, 400 hidden, IPv6, a sole exit).
-- Times are medians of several cold runs, printed with their ratio to a
-- baseline of the same run: loading (parsing) the network file.
-- Targets (issue 14): one node within 3x the baseline, every node under
-- 5 s; each line says met or MISSED, nothing is asserted.
-- Run by `make bench` with the real zmesh.core (keys made in C).
local ip = require "zmesh.ip"
local json = require "zmesh.json"
local keys = require "zmesh.net.keys"
local net = require "zmesh.net"
local core = require "zmesh.core"

local NRS, PUBLIC = 1000, 600

-- As `zmesh net` runs (lua/zmesh/cmd/net.lua): a short process collects
-- garbage less often.
collectgarbage("incremental", 400)

local function clock() return os.clock() end

-- Median of RUNS timings of FN, in milliseconds, each from a cold start
-- (nothing parsed before), as a `zmesh net render` process has it.
local function time(runs, fn)
  local ms = {}
  for i = 1, runs do
    ip.forget()
    collectgarbage()
    local t0 = clock()
    fn()
    ms[i] = (clock() - t0) * 1000
  end
  table.sort(ms)
  return ms[(runs + 1) // 2]
end

-- The network, built as add-node would (same fields, real sealed keys),
-- but in one go: a thousand add-node calls would each re-check the file.
local function build()
  local n = net.new({ name = "bench", ip_range = "10.0.0.0/8", ipv6_range = "fd00:be::/48", net_id = "bench" })
  for i = 1, NRS do
    local node_key <close> = core.key.generate()
    local id = string.format("node%04d", i)
    local public = i <= PUBLIC
    local addresses = public
      and { string.format("45.%d.%d.%d/24", i // 250, i % 250, 10), string.format("2a01:4f8:%x::10/64", i) }
      or { string.format("192.168.%d.%d/24", i % 250, 10 + i // 250) }
    local facts = { node_id = id, public_key = node_key:public(), addresses = addresses,
      listen_ports = { min = 51820, max = 52819 } }
    local pub, sealed = keys.for_node(facts.public_key)
    n.nodes[i] = {
      node_id = id, facts = facts,
      subnet = string.format("10.%d.%d.0/24", i // 256, i % 256),
      ipv6_subnet = string.format("fd00:be:0:%x::/64", i),
      wireguard_listen_port = 51820, wireguard_public_key = pub,
      wireguard_private_key = sealed, sealed_to = facts.public_key,
    }
  end
  n.exit = "node0007"
  return n
end

local path = os.tmpname()
net.save(build(), path)
local f = io.open(path) local size = #f:read("a") f:close()

local RUNS = 7
local n
local baseline = time(RUNS, function() n = net.load(path) end)
local policies = net.policies()
local opts = { policies = policies }

-- One line: time, ratio, and the target's verdict when it has one:
-- "ratio" (at most that many times the baseline) or "ms" (under it).
local function report(what, ms, target)
  local verdict = ""
  if target and target.ratio then
    verdict = string.format("  (target <= %dx: %s)", target.ratio, ms <= target.ratio * baseline and "met" or "MISSED")
  elseif target then
    verdict = string.format("  (target < %d ms: %s)", target.ms, ms < target.ms and "met" or "MISSED")
  end
  print(string.format("%-50s %9.1f ms  %6.1fx baseline%s", what, ms, ms / baseline, verdict))
end

local ONE, ALL = { ratio = 3 }, { ms = 5000 }
print(string.format("network: %d NRs (%d public, %d hidden), file %.0f KiB", NRS, PUBLIC, NRS - PUBLIC, size / 1024))
report("baseline: load (parse) the network file", baseline)
report("validate the network file (and build its topology)", time(RUNS, function() net.topology(n, opts) end))
report("render one public node (load, render, JSON)", time(RUNS, function()
  net.render_json(net.load(path), "node0001", opts)
end), ONE)
report("render one hidden node (load, render, JSON)", time(RUNS, function()
  net.render_json(net.load(path), "node0999", opts)
end), ONE)
report("render one public node, loading policies", time(RUNS, function()
  net.render_json(net.load(path), "node0001")
end), ONE)
report("render one public node, pretty JSON (as the CLI)", time(RUNS, function()
  json.encode(net.render(net.load(path), "node0001", opts), { pretty = true })
end), ONE)
report("render every node (load, render, JSON), total", time(1, function()
  net.render_all_json(net.load(path), opts)
end), ALL)
-- The whole command, process start included (wall clock).
local bin = os.getenv("ZMESH_BIN")
if bin then
  local function now_ms()
    local p = io.popen("date +%s%N")
    local ns = tonumber(p:read("a"))
    p:close()
    return ns / 1e6
  end
  local ms = {}
  for i = 1, 3 do
    local t0 = now_ms()
    os.execute(string.format("%s net render %s node0001 >/dev/null", bin, path))
    ms[i] = now_ms() - t0
  end
  table.sort(ms)
  report("`zmesh net render FILE NODE`, wall clock", ms[2])
end
os.remove(path)
