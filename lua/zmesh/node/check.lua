-- `zmesh node check`: for every NR on this node, every other NR of its
-- network: reachable or not, the round trip, and the path its traffic
-- takes now (direct, or through which aggregator or exit), with the
-- WireGuard handshake age and bytes of the peer it goes to. Probes are
-- ICMP echo from the NR's mesh address to theirs (zmesh.core.probe).
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local names = require "zmesh.node.names"
local nr_config = require "zmesh.nr.config"
local paths = require "zmesh.nr.paths"
local paths_of = require "zmesh.control.probe"
local uv = require "luv"

local check = {}

local TIMEOUT_MS = 1500

-- A monotonic clock with sub-millisecond steps (/proc/uptime has 10 ms).
local function now_ms() return uv.hrtime() / 1e6 end

local function check_nr(ctx, id, raw)
  local cfg = nr_config.validate(raw)
  local ns = names.nr_ns(id)
  local res = { net_id = id, network = cfg.network, node_id = cfg.node_id, peers = {} }
  if not core.netns.exists(ns) then
    res.error = "the NR's namespace is not there"
    return res
  end
  local dev = core.wg.get { ns = ns, name = names.wg_if(id) } or { peers = {} }
  local key_to_id = {}
  for _, p in ipairs(cfg.peers) do key_to_id[p.public_key] = p.node_id end
  local targets, routed = paths_of.targets(raw), paths_of.subnet_addrs(raw)
  local probe, err = core.probe.open(ns, cfg.mesh_address:match("^[^/]+"))
  if not probe then
    res.error = tostring(err)
    return res
  end
  local pid, sent, by_addr = math.random(1, 0xfffe), {}, {}
  local seq = 0
  local t = os.time()
  for target, mesh in pairs(targets) do
    seq = seq + 1
    by_addr[mesh] = target
    sent[target] = now_ms()
    probe:send(mesh, pid, seq, "zm1 check")
    -- The path of its containers' traffic (the probe's own may differ).
    local via = paths_of.peer_for(dev.peers, routed[target] or mesh)
    local via_id = via and key_to_id[via.public_key]
    local entry = { node_id = target, mesh = mesh, reachable = false }
    if not via then
      entry.path = "none"
    elseif via_id == target then
      entry.path = "direct"
    else
      entry.path = "via " .. tostring(via_id or via.public_key:sub(1, 8))
    end
    if via then
      entry.peer = via_id
      entry.handshake_age = (via.last_handshake or 0) > 0 and (t - via.last_handshake) or nil
      entry.rx_bytes, entry.tx_bytes = via.rx_bytes, via.tx_bytes
    end
    res.peers[target] = entry
  end
  local deadline = now_ms() + TIMEOUT_MS
  local pending = seq
  while pending > 0 and now_ms() < deadline do
    probe:wait(math.max(1, math.floor(deadline - now_ms())))
    for _, m in ipairs(probe:recv() or {}) do
      local target = m.reply and m.id == pid and by_addr[m.from]
      local e = target and res.peers[target]
      if e and not e.reachable then
        e.reachable = true
        e.rtt_ms = math.floor((now_ms() - sent[target]) * 100 + 0.5) / 100
        pending = pending - 1
      end
    end
  end
  probe:close()
  local f = cfg.failover
  if f then
    -- What the daemon's failover chose (as stored), for the graph.
    local choice = paths.from_stored(context.choice(ctx, id))
    if f.role == "hidden" then
      res.aggregator = paths.upstream(f, choice)
      res.standby = {}
      for _, a in ipairs(f.aggregators) do
        if a ~= res.aggregator then res.standby[a] = true end
      end
    end
    res.exit = paths.exit(f, choice)
  end
  if cfg.failover and cfg.failover.exits then
    local via = paths_of.peer_for(dev.peers, "8.8.8.8")
    local hop = via and tostring(key_to_id[via.public_key])
    -- The exit, and the peer its traffic goes to when that is not the exit.
    if not via then
      res.internet = "local"
    elseif res.exit and res.exit ~= hop then
      res.internet = "via " .. res.exit .. " (through " .. hop .. ")"
    else
      res.internet = "via " .. hop
    end
  end
  return res
end

-- The report for every NR of this node (or only NET_ID's).
function check.run(ctx, net_id)
  local out = {}
  for id, raw in pairs(context.saved_nrs(ctx)) do
    if not net_id or id == net_id then out[#out + 1] = check_nr(ctx, id, raw) end
  end
  if net_id and #out == 0 then
    require("zmesh.check").not_found("net_id", net_id, "no such NR on this node")
  end
  table.sort(out, function(a, b) return a.net_id < b.net_id end)
  return out
end

-- The report as a table for people.
function check.text(report)
  local lines = {}
  for _, nr in ipairs(report) do
    lines[#lines + 1] = string.format("NR %s (network %s, node %s)%s", nr.net_id, tostring(nr.network),
      tostring(nr.node_id), nr.internet and (", Internet " .. nr.internet) or "")
    if nr.error then lines[#lines + 1] = "  " .. nr.error end
    lines[#lines + 1] = string.format("  %-16s %-15s %-10s %-9s %-18s %s", "PEER", "MESH", "REACHABLE",
      "RTT ms", "PATH", "HANDSHAKE")
    local ids = {}
    for id in pairs(nr.peers) do ids[#ids + 1] = id end
    table.sort(ids)
    for _, id in ipairs(ids) do
      local p = nr.peers[id]
      lines[#lines + 1] = string.format("  %-16s %-15s %-10s %-9s %-18s %s", id, p.mesh,
        p.reachable and "yes" or "NO", p.rtt_ms and string.format("%.2f", p.rtt_ms) or "-", p.path,
        p.handshake_age and (p.handshake_age .. " s ago") or "never")
    end
  end
  return table.concat(lines, "\n")
end

return check
