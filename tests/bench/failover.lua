-- Failover, measured:
--  · probe traffic per node of a 100-NR network (10 public, 90 hidden),
--    from the targets each NR probes (zmesh.nr.paths.targets) and the
--    failover policy's interval, against the traffic the daemons of a
--    5-node simulated mesh really sent in the same run (the model's ratio
--    to what was measured there);
--  · the time from a primary aggregator's death to all pairs reachable
--    again, and from the exit losing the Internet to traffic leaving
--    through the next exit: median of 3, default failover policy.
local core = require "zmesh.core"
local json = require "zmesh.json"
local net = require "zmesh.net"
local nr_config = require "zmesh.nr.config"
local paths = require "zmesh.nr.paths"
local policy_settings = require("zmesh.daemon.failover").settings

local ROOT = os.getenv("ZMESH_ROOT") or "."
local build = dofile(ROOT .. "/tests/fixtures/net/build.lua")
-- Node keys for the model's network: real ones (the simulated mesh below
-- needs the real core, which the fake key area would replace).
local real_keys = { node_key = function() return core.key.generate() end }
local settings = policy_settings({}, { node_id = "x" })

-- Inner bytes of one probe (IP + ICMP + payload as encoded, about 60) and
-- what WireGuard adds on the wire over IPv4 (its header 32 + UDP 8 + IP 20).
local PROBE, WIRE = 28 + 60, 60

-- Packets per second each node sends for failover, from its rendered
-- CONFIGS: its probes, the kernel's echo replies to others' probes, and
-- the state it is asked to send back.
local function model(configs)
  local probes, asked, asks = {}, {}, {}
  for id, c in pairs(configs) do
    local cfg = nr_config.validate(c)
    local f = cfg.failover
    local targets = paths.targets(cfg)
    local ask = {}
    for _, e in ipairs(f.exits or {}) do ask[e] = true end
    if f.role == "public" then
      for _, h in ipairs(f.hidden or {}) do
        for _, a in ipairs(f.nodes[h].aggregators) do ask[a] = true end
      end
    end
    probes[id] = 0
    for t in pairs(targets) do
      probes[id] = probes[id] + 1
      asked[t] = (asked[t] or 0) + 1
      if ask[t] then asks[t] = (asks[t] or 0) + 1 end
    end
  end
  local rate = 1 / settings.interval
  local per = {}
  for id in pairs(configs) do
    local out = (probes[id] + (asked[id] or 0) + (asks[id] or 0)) * rate
    per[id] = { sent = out, daemon = (probes[id] + (asks[id] or 0)) * rate }
  end
  return per
end

local function report_100()
  local kinds = {}
  for i = 1, 10 do kinds[i] = "pub4" end
  for i = 11, 100 do kinds[i] = "hid4" end
  local n = build.network(net, kinds, real_keys, { net_id = "bench100", ip_range = "10.0.0.0/8" })
  local per, t = model(net.render_all(n)), net.topology(n)
  local rows = {}
  for id, v in pairs(per) do
    local role = t.role[id] == "hidden" and "hidden" or (#(t.carried[id] or {}) > 0 and "primary aggregator"
      or (#(t.standby[id] or {}) > 0 and "standby aggregator" or "public"))
    local r = rows[role] or { count = 0, sent = 0 }
    r.count, r.sent = r.count + 1, math.max(r.sent, v.sent)
    rows[role] = r
  end
  print(string.format("probe traffic, 100-NR network (10 public, 90 hidden), a probe every %.2f s:", settings.interval))
  for _, role in ipairs({ "hidden", "public", "standby aggregator", "primary aggregator" }) do
    local r = rows[role]
    if r then
      print(string.format("  %-19s (%2d nodes): %6.1f packets/s out, %7.0f B/s inner, %7.0f B/s on the wire",
        role, r.count, r.sent, r.sent * PROBE, r.sent * (PROBE + WIRE)))
    end
  end
end

report_100()

-- The live part: the 5-node simulated mesh with daemons.
local mesh = require "zmesh.sim.mesh"
local sim = require "zmesh.sim"

local S = sim.new { prefix = "zb" .. string.format("%x", os.time() % 0xfff) .. "f-",
  bin = os.getenv("ZMESH_BIN") or "build/zmesh", backend = "userspace" }

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function pairs_ok(netw, ids)
  for _, from in ipairs(ids) do
    local cmds = {}
    for _, to in ipairs(ids) do
      if to ~= from then
        cmds[#cmds + 1] = "ping -c 1 -W 1 " .. netw.containers[to].ip .. " >/dev/null || echo NO &"
      end
    end
    local out = S:exec(from, netw.containers[from].netns, "sh -c " .. sim.q(table.concat(cmds, " ") .. " wait"))
    if out:find("NO", 1, true) then return false end
  end
  return true
end

local function wait_for(limit, fn)
  local t0 = sim.now()
  while sim.now() - t0 < limit do
    if fn() then return sim.now() - t0 end
  end
  error("not within " .. limit .. " s", 2)
end

local function sent_total(id)
  local _, text = S:api(id, "GET", "/metrics")
  local n = 0
  for v in tostring(text):gmatch("zmesh_probes_sent_total{[^}]*} (%d+)") do n = n + tonumber(v) end
  return n
end

local ok, err = pcall(function()
  local fleet = mesh.build(S)
  for _, nd in ipairs(mesh.fleet) do
    S.nodes[nd.id].config.reconcile_interval = 5
    S:write_config(nd.id)
    S:daemon_start(nd.id)
  end
  fleet:start_server()
  local netw = fleet:network { name = "bench", id = "bench1", range = "10.8.0.0/16" }
  netw:define({ "n1", "n2", "n3", "n4", "n5" })
  netw:net("set-exit " .. netw.file .. " n1 n3 --probe 203.0.113.200")
  netw:deploy()
  netw:attach()
  local all = { "n1", "n2", "n3", "n4", "n5" }
  wait_for(30, function() return pairs_ok(netw, all) end)
  -- Probe traffic: measured against the model of this very network.
  local file = json.decode(netw:net("show " .. netw.file .. " --json"))
  local primary
  for _, nd in ipairs(file.nodes) do if nd.node_id == "n4" then primary = nd.aggregators[1] end end
  local before, t0 = {}, sim.now()
  for _, id in ipairs(all) do before[id] = sent_total(id) end
  sim.sh("sleep 10")
  local took = sim.now() - t0
  local measured, predicted = 0, 0
  local per = model(json.decode(netw:net("render " .. netw.file .. " --all")))
  for _, id in ipairs(all) do
    measured = measured + (sent_total(id) - before[id]) / took
    predicted = predicted + per[id].daemon
  end
  print(string.format("probes and state sent by the 5 simulated daemons: %.1f/s measured, %.1f/s by the model; "
    .. "ratio %.2f", measured, predicted, measured / predicted))
  -- Aggregator failover: the primary's cable pulled, then put back.
  local times = {}
  for run = 1, 3 do
    S:cable(primary, false)
    local rest = {}
    for _, id in ipairs(all) do if id ~= primary then rest[#rest + 1] = id end end
    times[run] = wait_for(30, function() return pairs_ok(netw, rest) end)
    S:cable(primary, true)
    wait_for(60, function() return pairs_ok(netw, all) end)
    sim.sh("sleep " .. (settings.hold + 2))
  end
  print(string.format("aggregator failover (primary %s dead): all pairs again in %.2f s (median of 3: %.2f %.2f %.2f); "
    .. "target < 5 s", primary, median({ table.unpack(times) }), times[1], times[2], times[3]))
  -- Exit failover: n1 loses the Internet.
  local function through(addr)
    for _, id in ipairs({ "n2", "n4", "n5" }) do
      if netw:seen_from(id) ~= addr then return false end
    end
    return true
  end
  wait_for(30, function() return through("203.0.113.11") end)
  times = {}
  for run = 1, 3 do
    S:exec("n1", "ndmz", "sh -c " .. sim.q("nft add table inet cut && nft add chain inet cut passing "
      .. "'{ type filter hook forward priority 0; }' && nft add rule inet cut passing ip daddr 203.0.113.200 drop "
      .. "&& nft add chain inet cut own '{ type filter hook output priority 0; }' && nft add rule inet cut own "
      .. "ip daddr 203.0.113.200 drop"))
    times[run] = wait_for(60, function() return through("203.0.113.13") end)
    S:exec("n1", "ndmz", "nft delete table inet cut")
    wait_for(60, function() return through("203.0.113.11") end)
  end
  print(string.format("exit failover (n1 without Internet): traffic out through n3 in %.2f s (median of 3: "
    .. "%.2f %.2f %.2f)", median({ table.unpack(times) }), times[1], times[2], times[3]))
  fleet:destroy()
end)
S:destroy()
if not ok then
  io.stderr:write("bench failover: ", tostring(err), "\n")
  os.exit(1)
end
