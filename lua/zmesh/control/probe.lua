-- Reachability of every other NR of each NR's network, measured by the
-- daemon for the fleet's status (`zmesh net check` shows the matrix):
-- one ping(8) per target from inside the NR (nsenter into its network
-- namespace, so the source is the NR's mesh address), all of an NR's
-- targets at once, run as child processes from the luv loop so that
-- nothing waits for them. The path is what the NR's WireGuard routes
-- say now: the peer whose AllowedIPs take the target's subnet (longest
-- match; its mesh address when the subnet is not known), direct when that
-- peer is the target itself.
local uv = require "luv"
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"

local probe = {}

local MESH = ip.parse_cidr("100.64.0.0/10")

-- Every other NR of CFG's network (a raw NR config): {node_id → mesh}.
function probe.targets(cfg)
  local out = {}
  local nodes = type(cfg.failover) == "table" and cfg.failover.nodes or {}
  for id, n in pairs(nodes) do
    if id ~= cfg.node_id and type(n) == "table" and type(n.mesh) == "string" and not n.device then
      out[id] = n.mesh
    end
  end
  for _, p in ipairs(cfg.peers or {}) do
    if type(p.node_id) == "string" and not p.node_id:find("^access:") and not out[p.node_id] then
      for _, a in ipairs(p.allowed_ips or {}) do
        local c = ip.parse_cidr(a)
        if c and c.family == 4 and c.len == 32 and ip.contains(MESH, c) then out[p.node_id] = ip.format_addr(c) end
      end
    end
  end
  return out
end

-- Where the traffic to each other NR's containers goes: {node_id → an
-- address in its IPv4 subnet (the gateway)}. The path is the peer that
-- routes it, which is not always the one that routes the mesh address
-- probed (a standby aggregator carries a hidden NR's /32, not its /24).
function probe.subnet_addrs(cfg)
  local out = {}
  local function add(id, subnet)
    local c = type(subnet) == "string" and ip.parse_cidr(subnet)
    if c and c.family == 4 and not out[id] then out[id] = ip.format_addr(ip.host(c, 1)) end
  end
  local nodes = type(cfg.failover) == "table" and cfg.failover.nodes or {}
  for id, n in pairs(nodes) do
    if id ~= cfg.node_id and type(n) == "table" and type(n.owned) == "table" and not n.device then
      add(id, n.owned[1])
    end
  end
  for _, p in ipairs(cfg.peers or {}) do
    if type(p.node_id) == "string" and not p.node_id:find("^access:") then add(p.node_id, p.subnet) end
  end
  return out
end

-- The peer (of a wg dump's peers) whose AllowedIPs take ADDR.
function probe.peer_for(peers, addr)
  local a = ip.parse_addr(addr)
  local best, len
  for _, p in ipairs(peers or {}) do
    for _, t in ipairs(p.allowed_ips or {}) do
      local c = ip.parse_cidr(t)
      if a and c and c.family == a.family and ip.contains(c, a) and (not len or c.len > len) then
        best, len = p, c.len
      end
    end
  end
  return best
end

-- Parse ping output: {addr → {rtt_ms, ttl}} for every reply seen.
function probe.parse(text)
  local out = {}
  for addr, ttl, rtt in text:gmatch("bytes from ([%d%.]+): icmp_seq=%d+ ttl=(%d+) time=([%d%.]+) ms") do
    out[addr] = { rtt_ms = tonumber(rtt), ttl = tonumber(ttl) }
  end
  return out
end

-- Ping TARGETS ({id → addr}) from NR NET_ID; DONE({id → {reachable,
-- rtt_ms, hops}}) once every ping ended (within about WAIT seconds).
function probe.run(net_id, targets, done, opts)
  opts = opts or {}
  local words = {}
  for _, addr in pairs(targets) do words[#words + 1] = addr end
  if #words == 0 then return done({}) end
  local wait = opts.wait or 1
  local script = "for a in " .. table.concat(words, " ") .. "; do ping -n -c 1 -W " .. wait
    .. " \"$a\" & done; wait"
  local out = uv.new_pipe(false)
  local chunks = {}
  local finished = false
  local function finish()
    if finished then return end
    finished = true
    local seen = probe.parse(table.concat(chunks))
    local res = {}
    for id, addr in pairs(targets) do
      local r = seen[addr]
      res[id] = r and { reachable = true, rtt_ms = r.rtt_ms, hops = math.max(0, 64 - r.ttl) }
        or { reachable = false }
    end
    done(res)
  end
  local handle, err
  handle, err = uv.spawn(opts.nsenter or "nsenter", {
    args = { "--net=/run/netns/" .. names.nr_ns(net_id), "--", "sh", "-c", script },
    stdio = { nil, out, nil },
  }, function()
    if handle and not handle:is_closing() then handle:close() end
    -- Exit may come before the last bytes: read to the end first.
    local t = uv.new_timer()
    t:start(50, 0, function()
      t:close()
      if not out:is_closing() then out:close() end
      finish()
    end)
  end)
  if not handle then
    out:close()
    return done(nil, err)
  end
  out:read_start(function(rerr, data)
    if rerr or not data then return end
    chunks[#chunks + 1] = data
  end)
end

return probe
