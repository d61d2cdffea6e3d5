-- A simulated fleet running user networks, built the way users and nodes
-- would: nodes publish facts, a user's network tool (`zmesh net`, no root)
-- renders one NR config per node, each node applies its own. Public nodes
-- sit on the simulated Internet (IPv4 and IPv6), hidden ones behind NAT
-- routers. Used by the demo and the end-to-end tests.
local json = require "zmesh.json"
local sim = require "zmesh.sim"

local mesh = {}

-- Three public nodes, two hidden ones behind their own NAT routers.
mesh.fleet = {
  { id = "n1", addr = "203.0.113.11/24", addr6 = "2001:db8::11/64" },
  { id = "n2", addr = "203.0.113.12/24", addr6 = "2001:db8::12/64" },
  { id = "n3", addr = "203.0.113.13/24", addr6 = "2001:db8::13/64" },
  { id = "n4", behind = "r1" },
  { id = "n5", behind = "r2" },
}
mesh.routers = { { "r1", "203.0.113.101/24" }, { "r2", "203.0.113.102/24" } }
mesh.server = "203.0.113.200"

local q, sh = sim.q, sim.sh

local Fleet = {}
Fleet.__index = Fleet

-- Build the fleet in simulation S and start every node. opts.log(line)
-- narrates; opts.udp_timeout shortens the NAT routers' UDP timeouts.
function mesh.build(S, opts)
  opts = opts or {}
  local self = setmetatable({ S = S, log = opts.log or function() end,
    dir = sh("mktemp -d"), down = {} }, Fleet)
  S:internet()
  for _, r in ipairs(mesh.routers) do
    S:nat_router(r[1], { wan = r[2], udp_timeout = opts.udp_timeout })
  end
  for _, n in ipairs(mesh.fleet) do
    S:node { id = n.id, addr = n.addr, addr6 = n.addr6, behind = n.behind }
    assert(S:call(n.id, "node.start", {}))
  end
  self.log("nodes up, each with its ndmz: " .. self:describe())
  return self
end

-- A fleet of the nodes the caller makes in S itself (another topology):
-- the user's side (facts, networks) without the standard five nodes.
function mesh.adopt(S, opts)
  opts = opts or {}
  return setmetatable({ S = S, log = opts.log or function() end, dir = sh("mktemp -d"), down = {} }, Fleet)
end

function Fleet:describe()
  local parts = {}
  for _, n in ipairs(mesh.fleet) do
    parts[#parts + 1] = n.behind and (n.id .. " (hidden, behind NAT " .. n.behind .. ")")
      or (n.id .. " (" .. n.addr:match("^[^/]+") .. ")")
  end
  return table.concat(parts, ", ")
end

-- The node facts of ID, saved in the user's directory; returns the file.
function Fleet:facts(id)
  local path = self.dir .. "/facts-" .. id .. ".json"
  local facts = assert(self.S:call(id, "node.facts", {}))
  local f = assert(io.open(path, "w"))
  f:write(json.encode(facts, { pretty = true }))
  f:close()
  return "facts-" .. id .. ".json"
end

-- A node dies: everything on it stops (its NRs, its ndmz).
function Fleet:kill(id)
  assert(self.S:call(id, "node.stop", {}))
  self.down[id] = true
end

-- A server on the Internet that answers with the address it sees.
function Fleet:start_server()
  local peer_py = sim.peer_py
  self.peer_py = peer_py
  self.server_ns = self.S:host("srv", mesh.server .. "/24")
  self.server_pid = tonumber((sh("ip netns exec " .. self.server_ns .. " python3 " .. peer_py
    .. " serve 8080 >/dev/null 2>&1 & echo $!")))
  sh("sleep 0.3")
end

-- Does a ping from the Internet server to ADDR get an answer?
function Fleet:server_reaches(addr)
  local _, ok = sh("ip netns exec " .. self.server_ns .. " ping -c 1 -W 1 " .. addr)
  return ok
end

function Fleet:destroy()
  if self.server_pid then sh("kill " .. self.server_pid) end
  sh("rm -rf " .. q(self.dir))
end

local Network = {}
Network.__index = Network

-- A user network on this fleet. spec: {name, id, range, range6, first_port,
-- tag = container name prefix}.
function Fleet:network(spec)
  return setmetatable({ fleet = self, S = self.S, log = self.log, name = spec.name,
    id = spec.id, range = spec.range, range6 = spec.range6, first_port = spec.first_port,
    file = spec.name .. ".json", tag = spec.tag or "c", members = {}, containers = {} }, Network)
end

-- Run `zmesh net ARGS` as the user; raises with its message on failure.
function Network:net(args)
  self.log("$ zmesh net " .. args)
  local out, ok = sh("cd " .. q(self.fleet.dir) .. " && " .. self.S.bin .. " net " .. args)
  if not ok then error("zmesh net " .. args .. ": " .. out, 0) end
  return out
end

-- The user creates the network and adds the nodes IDS from their facts.
function Network:define(ids)
  self:net(string.format("new %s %s %s%s --id %s", self.file, self.name, self.range,
    self.range6 and (" --ipv6 " .. self.range6) or "", self.id))
  for i, id in ipairs(ids) do
    local port = self.first_port and (" --port " .. (self.first_port + i - 1)) or ""
    self:net("add-node " .. self.file .. " " .. self.fleet:facts(id) .. port)
    self.members[#self.members + 1] = id
  end
end

-- Render every member's NR config and apply it on its node (skipping
-- nodes that are down). Returns {id = number of changes}.
function Network:deploy()
  self.configs = json.decode(self:net("render " .. self.file .. " --all"))
  local changes = {}
  for _, id in ipairs(self.members) do
    if not self.fleet.down[id] then
      local res, err = self.S:call(id, "nr.apply", assert(self.configs[id], "no render for " .. id))
      if not res then error(id .. ": nr.apply: " .. tostring(err), 0) end
      changes[id] = #res.changes
      self.log(string.format("%s: nr.apply %s: %d changes", id, self.configs[id].subnet, #res.changes))
    end
  end
  return changes
end

-- One container per member NR: <subnet>.10 and <its /64>::10.
function Network:attach()
  for _, id in ipairs(self.members) do
    local cfg = self.configs[id]
    local c = { node = id, netns = self.tag .. "-" .. id, ip = (cfg.subnet:gsub("0/24$", "10")),
      ip6 = cfg.ipv6_subnet and (cfg.ipv6_subnet:gsub("/64$", "10")) }
    local res, err = self.S:call(id, "container.attach", { net_id = cfg.net_id, netns = c.netns,
      ip = c.ip, ip6 = c.ip6, create = true })
    if not res then error(id .. ": container.attach: " .. tostring(err), 0) end
    self.containers[id] = c
  end
end

function Network:remove_node(id)
  self:net("remove-node " .. self.file .. " " .. id)
  for i, m in ipairs(self.members) do if m == id then table.remove(self.members, i) end end
end

-- Can FROM's container reach TO's (FAMILY 4 or 6)? The first packets may
-- wait for a handshake: a second try before calling it a failure.
function Network:ping(from, to, family, target)
  target = target or (family == 6 and self.containers[to].ip6 or self.containers[to].ip)
  local _, ok = self.S:exec(from, self.containers[from].netns,
    "ping -" .. family .. " -c 1 -W 1 " .. target .. " || ping -" .. family
    .. " -c 2 -W 2 " .. target)
  return ok
end

-- Every live member's container pings every other's: {from = {to = ok}}
-- and the number of failures.
function Network:matrix(family)
  local result, failures = {}, 0
  local ids = {}
  for _, id in ipairs(self.members) do if not self.fleet.down[id] then ids[#ids + 1] = id end end
  for _, from in ipairs(ids) do
    result[from] = {}
    for _, to in ipairs(ids) do
      if from ~= to then
        local ok = self:ping(from, to, family)
        result[from][to] = ok
        if not ok then failures = failures + 1 end
      end
    end
  end
  return result, failures, ids
end

function Network:format_matrix(result, ids)
  local lines = { "  from\\to " .. table.concat(ids, "  ") }
  for _, from in ipairs(ids) do
    local cells = {}
    for _, to in ipairs(ids) do
      cells[#cells + 1] = from == to and "--" or (result[from][to] and "ok" or "NO")
    end
    lines[#lines + 1] = string.format("  %-7s %s", from, table.concat(cells, "  "))
  end
  return table.concat(lines, "\n")
end

-- The address the Internet server sees when ID's container connects, or
-- nil and what the probe said.
function Network:seen_from(id)
  local out, ok = self.S:exec(id, self.containers[id].netns, "python3 " .. self.fleet.peer_py
    .. " probe tcp " .. mesh.server .. " 8080 3")
  if ok then return out end
  return nil, out
end

return mesh
