-- 200 NRs on one node, the seed's picture: cust1 … cust200, each its own
-- user network with the same addresses (10.3.1.0/24, 2 peers), one
-- container each, applied through the daemon's API as provisioning would
-- (one curl process sending every request, PUT NR then PUT container),
-- on a simulated node with the userspace WireGuard backend. Printed:
--  · the time to apply all (target under 5 s), against 200 times the
--    first NR's own time on the empty node (the ratio says how the cost
--    of an NR grows with the NRs already there);
--  · a no-op re-apply of all, as PUTs of the same configs (target under
--    0.5 s) and as one converge of the node (the daemon's reconcile
--    loop), against 200 times one no-op PUT on a node with one NR;
--  · memory per NR: RSS and PSS of its wireguard-go (median of all 200),
--    against the same of the first NR's daemon while it was alone.
-- The kernel backend cannot run here (no WireGuard module); the QEMU VM
-- (make vm-test) emulates its CPU, so its timings say nothing of a real
-- node; memory per kernel NR is measured there by kernel_nr.lua. Nothing
-- is asserted about timings.
-- ZMESH_BENCH_NRS changes the number of NRs (default 200).
local ROOT = os.getenv("ZMESH_ROOT") or "."
local stats = dofile(ROOT .. "/tests/bench/lib/stats.lua")
local core = require "zmesh.core"
local json = require "zmesh.json"
local nrconf = require "nrconf"
local sim = require "zmesh.sim"

local BIN = os.getenv("ZMESH_BIN") or (ROOT .. "/build/zmesh")
local NRS = tonumber(os.getenv("ZMESH_BENCH_NRS") or "") or 200
local SOCKET = "/run/zmesh/zmesh.sock"

local S = sim.new { prefix = "zb" .. string.format("%x", os.time() % 0xfff) .. "m-", bin = BIN,
  backend = "userspace" }

local function put(path, text)
  assert(core.fs.write("/proc/" .. S.nodes.n1.pid .. "/root" .. path, text, tonumber("600", 8)))
end

-- One curl process sending REQUESTS ({method, path, body file}) in turn
-- over the daemon's socket: {{code, seconds}…} and the wall-clock seconds
-- of all of them.
local function batch(requests)
  local lines = {}
  for i, r in ipairs(requests) do
    lines[#lines + 1] = table.concat({
      'url = "http://zmesh' .. r[2] .. '"', 'request = "' .. r[1] .. '"', 'unix-socket = "' .. SOCKET .. '"',
      'header = "Content-Type: application/json"', 'data-binary = "@' .. r[3] .. '"',
      'output = "/run/many/reply-' .. i .. '.json"',
      'write-out = "%{http_code} %{time_total}\\n"', "silent", "show-error" }, "\n")
  end
  put("/run/many/curl.conf", table.concat(lines, "\nnext\n") .. "\n")
  local t0 = stats.now()
  local out, ok = S:sh("n1", "curl -K /run/many/curl.conf")
  local took = stats.now() - t0
  if not ok then error("curl: " .. out:sub(1, 200) .. "\ndaemon log: " .. (S:sh("n1", "tail -20 /run/zmesh-daemon.log")), 2) end
  local res = {}
  for code, secs in out:gmatch("(%d+) ([%d.]+)") do
    res[#res + 1] = tonumber(secs)
    if code ~= "200" then
      local r = requests[#res]
      error(string.format("%s %s answered %s: %s", r[1], r[2], code,
        (S:sh("n1", "cat /run/many/reply-" .. #res .. ".json"))), 2)
    end
  end
  S:sh("n1", "rm -f /run/many/reply-*.json")
  if #res ~= #requests then error("curl answered " .. #res .. " of " .. #requests .. ": " .. out:sub(-300), 2) end
  return res, took
end

-- RSS and PSS (kB) of every wireguard-go of the node.
local function daemons_memory()
  local rss, pss = {}, {}
  for _, p in ipairs(S:processes()) do
    if p.comm == "wireguard-go" then
      local f = io.open("/proc/" .. p.pid .. "/smaps_rollup")
      local text = f and f:read("a") or ""
      if f then f:close() end
      local r, s = text:match("\nRss:%s+(%d+) kB"), text:match("\nPss:%s+(%d+) kB")
      if r and s then
        rss[#rss + 1], pss[#pss + 1] = tonumber(r), tonumber(s)
      end
    end
  end
  return rss, pss
end

-- One inotify instance per wireguard-go: the kernel's default 128 per
-- user would stop the node at about 120 NRs (a node gets more from
-- examples/sysctl/90-zmesh.conf). Raised for this run, put back after.
local INOTIFY = "/proc/sys/fs/inotify/max_user_instances"
local function read_limit()
  local f = io.open(INOTIFY)
  local v = f and tonumber(f:read("l"))
  if f then f:close() end
  return v
end
local function write_limit(v)
  local f = io.open(INOTIFY, "w")
  if f then
    f:write(tostring(v), "\n")
    f:close()
  end
end
local inotify_before = read_limit()
if inotify_before and inotify_before < NRS + 256 then write_limit(NRS + 256) end

local ok, err = pcall(function()
  S:internet()
  S:node { id = "n1", addr = "203.0.113.11/24", reconcile_interval = 3600 }
  assert(S:call("n1", "node.start", {}))
  local facts = assert(S:call("n1", "node.facts", {}))
  assert(core.fs.mkdir("/proc/" .. S.nodes.n1.pid .. "/root/run/many", tonumber("700", 8)))
  local ids = {}
  for k = 1, NRS do
    local id = "cust" .. k
    ids[k] = id
    local cfg = nrconf.make(facts, id, 3, 2, nil, { port = 51820 + k })
    put("/run/many/" .. id .. ".json", json.encode(cfg))
    put("/run/many/" .. id .. ".c.json", json.encode({ ip = "10.3.1.10", create = true }))
  end
  S:daemon_start("n1", 60)
  -- The first NR alone on the empty node: its apply and container, one
  -- no-op PUT (median of 15) and its daemon's memory.
  local first = batch({ { "PUT", "/v1/nrs/cust1", "/run/many/cust1.json" },
    { "PUT", "/v1/nrs/cust1/containers/c1", "/run/many/cust1.c.json" } })
  local first_apply = first[1] + first[2]
  local noop1 = {}
  for i = 1, 15 do noop1[i] = { "PUT", "/v1/nrs/cust1", "/run/many/cust1.json" } end
  local noop1_times = batch(noop1)
  local noop_one = stats.median(noop1_times)
  local rss1, pss1 = daemons_memory()
  -- All the others, then all again (no-op), then one converge.
  local reqs = {}
  for k = 2, NRS do
    reqs[#reqs + 1] = { "PUT", "/v1/nrs/" .. ids[k], "/run/many/" .. ids[k] .. ".json" }
    reqs[#reqs + 1] = { "PUT", "/v1/nrs/" .. ids[k] .. "/containers/c" .. k, "/run/many/" .. ids[k] .. ".c.json" }
  end
  local each, rest = batch(reqs)
  local all = first_apply + rest
  local last = each[#each - 1] + each[#each]
  local up = S:sh("n1", "ls /run/netns | grep -c '^n-cust'")
  assert(tonumber(up) == NRS, "only " .. up .. " NRs are up")
  reqs = {}
  for k = 1, NRS do reqs[k] = { "PUT", "/v1/nrs/" .. ids[k], "/run/many/" .. ids[k] .. ".json" } end
  local _, noop_all = batch(reqs)
  put("/run/many/empty.json", "{}")
  local conv = batch({ { "POST", "/v1/call/node.converge", "/run/many/empty.json" } })
  local rss, pss = daemons_memory()
  assert(#pss == NRS, "found " .. #pss .. " wireguard-go daemons for " .. NRS .. " NRs")
  local mr, mp = stats.median(rss), stats.median(pss)
  print(string.format("%d NRs on one node (one container each), through the daemon's API, userspace WireGuard:", NRS))
  print(string.format("  apply all: %.2f s (target < 5 s: %s); the first NR on the empty node %.1f ms, the last "
    .. "%.1f ms; all / (%d × first) %.2f", all, stats.verdict(all, "<", 5), first_apply * 1000, last * 1000, NRS,
    all / (NRS * first_apply)))
  print(string.format("  no-op re-apply of all: %.3f s as %d PUTs (target < 0.5 s: %s), %.3f s as one converge; "
    .. "one no-op PUT with one NR %.1f ms; all / (%d × one) %.2f", noop_all, NRS,
    stats.verdict(noop_all, "<", 0.5), conv[1], noop_one * 1000, NRS, noop_all / (NRS * noop_one)))
  print(string.format("  memory per NR, its wireguard-go (median of %d): RSS %.1f MiB, PSS %.1f MiB; the first alone: "
    .. "RSS %.1f MiB, PSS %.1f MiB; PSS ratio %.2f", #pss, mr / 1024, mp / 1024, rss1[1] / 1024, pss1[1] / 1024,
    mp / pss1[1]))
end)
S:destroy()
if inotify_before and read_limit() ~= inotify_before then write_limit(inotify_before) end
if not ok then
  io.stderr:write("bench nr_many: ", tostring(err), "\n")
  os.exit(1)
end
