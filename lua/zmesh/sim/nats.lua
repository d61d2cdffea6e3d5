-- NATS servers for the simulated fleet (tests, the REPL): a cluster of
-- nats-server processes, each in a host namespace of its own on the
-- simulated Internet (documentation addresses only), configured by
-- `zmesh net nats-config`; and what nodes need to dial out to it.
--
--   local simnats = require "zmesh.sim.nats"
--   local C = simnats.cluster(S, { count = 3 })   -- nats1..3 at 203.0.113.201..
--   C:configure({ "/path/demo.json" }, { "n1", "n2" })  -- server files, seeds
--   C:start_all(); C:stop("nats1", "KILL"); C:start("nats1")
--   simnats.management(S, "n1")      -- an address of the node's own
--
-- Every process and namespace goes with S:destroy(); the servers' stores
-- live under S:state_root().
local sim = require "zmesh.sim"

local simnats = {}

local q, sh = sim.q, sim.sh

local Cluster = {}
Cluster.__index = Cluster

-- COUNT servers nats1.. at 203.0.113.(FIRST + i - 1) (default 201).
function simnats.cluster(S, opts)
  opts = opts or {}
  local self = setmetatable({ S = S, servers = {}, pids = {}, dir = S:state_root() .. "/nats" }, Cluster)
  local first = opts.first or 201
  for i = 1, opts.count or 3 do
    local name = "nats" .. i
    local host = "203.0.113." .. (first + i - 1)
    local ns = S:host(name, host .. "/24")
    self.servers[i] = { name = name, host = host, ns = ns, spec = name .. "=" .. host }
  end
  assert(os.execute("mkdir -p " .. q(self.dir) .. " && chmod 700 " .. q(self.dir)))
  return self
end

function Cluster:urls()
  local out = {}
  for i, s in ipairs(self.servers) do out[i] = "nats://" .. s.host .. ":4222" end
  return out
end

function Cluster:server(name)
  for _, s in ipairs(self.servers) do if s.name == name then return s end end
  error("no NATS server " .. tostring(name), 2)
end

-- Write the servers' files and the seeds (zmesh net nats-config) for the
-- nodes of FILES and the extra node ids NODES.
function Cluster:configure(files, nodes)
  local cmd = { self.S.bin, "net", "nats-config" }
  for _, f in ipairs(files) do cmd[#cmd + 1] = q(f) end
  for _, s in ipairs(self.servers) do cmd[#cmd + 1] = "--server " .. q(s.spec) end
  for _, id in ipairs(nodes or {}) do cmd[#cmd + 1] = "--node " .. q(id) end
  cmd[#cmd + 1] = "--out " .. q(self.dir) .. " --store-dir " .. q(self.dir .. "/store")
  local out, ok = sh(table.concat(cmd, " "))
  if not ok then error("nats-config: " .. out, 2) end
  self.admin_seed = self.dir .. "/nkeys/admin.nk"
  return out
end

function Cluster:seed(node_id) return self.dir .. "/nkeys/" .. node_id .. ".nk" end

-- Start server NAME (its log in DIR/NAME.log); returns its pid.
function Cluster:start(name)
  local s = self:server(name)
  local out = sh(string.format("ip netns exec %s setsid nats-server -c %s >> %s 2>&1 < /dev/null & echo $!",
    s.ns, q(self.dir .. "/" .. name .. ".conf"), q(self.dir .. "/" .. name .. ".log")))
  local pid = tonumber(out)
  if not pid then error("nats-server " .. name .. ": " .. out, 2) end
  self.pids[name] = pid
  -- Listening: the client port answers inside its namespace.
  for _ = 1, 200 do
    local _, ok = sh(string.format("ip netns exec %s bash -c 'exec 3<>/dev/tcp/127.0.0.1/4222' 2>/dev/null", s.ns))
    if ok then return pid end
    sh("sleep 0.05")
  end
  error("nats-server " .. name .. " did not listen: " .. (sh("tail -5 " .. q(self.dir .. "/" .. name .. ".log"))), 2)
end

function Cluster:start_all()
  for _, s in ipairs(self.servers) do self:start(s.name) end
end

-- Stop server NAME with SIG (default TERM) and wait until it is gone.
function Cluster:stop(name, sig)
  local pid = self.pids[name]
  if not pid then return end
  sh("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
  for _ = 1, 400 do
    local _, alive = sh("kill -0 " .. pid .. " 2>/dev/null")
    if not alive then break end
    sh("sleep 0.02")
  end
  self.pids[name] = nil
end

function Cluster:stop_all(sig)
  for _, s in ipairs(self.servers) do self:stop(s.name, sig) end
end

-- A host on the Internet for the user's tool (zmesh net publish …).
function simnats.user_host(S, addr)
  return S:host("user", addr or "203.0.113.50/24")
end

-- Run CMD in the user's host: output and success.
function simnats.as_user(S, cmd)
  return sh("ip netns exec " .. S:ns("user") .. " " .. cmd)
end

-- Give node ID's own namespace (its host, where the daemon runs) an
-- address on its NIC and a default route, as a real node's host has:
-- the ndmz has its own address on the same NIC. Public nodes get
-- 203.0.113.(100 + last byte of their address), hidden ones .100 of
-- their router's LAN.
function simnats.management(S, id)
  local node = assert(S.nodes[id], "unknown node " .. tostring(id))
  local addr, gw
  local up = node.config.uplink
  if node.hidden then
    local prefix = up.addresses[1]:match("^(%d+%.%d+%.%d+%.)")
    addr, gw = prefix .. (100 + tonumber(up.addresses[1]:match("%.(%d+)/"))) .. "/24", up.gateway
  else
    local last = tonumber(up.addresses[1]:match("%.(%d+)/"))
    addr, gw = "203.0.113." .. (100 + last) .. "/24", up.gateway
  end
  local out, ok = S:sh(id, string.format("ip addr add %s dev eth0 && ip route replace default via %s", addr, gw))
  if not ok then error("management address of " .. id .. ": " .. out, 2) end
  return addr
end

-- Copy node ID's seed into its /run (mode 0600) and give its config the
-- control section for cluster C; CONTROL adds to it.
function simnats.control(S, C, id, control)
  local node = S.nodes[id]
  local path = "/run/zmesh-nats.nk"
  local out, ok = sh(string.format("install -m 0600 %s /proc/%d/root%s", q(C:seed(id)), node.pid, path))
  if not ok then error("seed of " .. id .. ": " .. out, 2) end
  local c = { urls = C:urls(), nkey = path }
  for k, v in pairs(control or {}) do c[k] = v end
  node.config.control = c
  S:write_config(id)
end

return simnats
