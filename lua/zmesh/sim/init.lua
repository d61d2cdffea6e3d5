-- A simulated fleet on one machine, for the demo and the end-to-end tests.
--
-- The Internet is a namespace with a bridge and documentation addresses
-- only (203.0.113.0/24, 2001:db8::/64); nothing links it to the machine's
-- own network. A node is a holder process with its own mount namespace
-- (a private /run, hence its own /run/netns and /run/wireguard, exactly as
-- on a real node) and its own network namespace playing the node's root
-- namespace, whose "NIC" eth0 is a veth onto the Internet bridge, or onto a
-- NAT router namespace for a hidden node. zmesh runs inside a node through
-- nsenter, with the real names (ndmz, n-<id>, w-<id>) unchanged.
local core = require "zmesh.core"
local json = require "zmesh.json"

local Sim = {}
Sim.__index = Sim

local sim = {}

-- A small TCP/UDP server and probe (answers with the address it sees),
-- used as a host on the simulated Internet.
sim.peer_py = (debug.getinfo(1, "S").source:match("^@(.*)/init%.lua$") or "lua/zmesh/sim")
  .. "/peer.py"
-- Absolute: commands inside a node run from its root directory.
if sim.peer_py:sub(1, 1) ~= "/" then sim.peer_py = os.getenv("PWD") .. "/" .. sim.peer_py end

local INET_V4, INET_GW = "203.0.113.254/24", "203.0.113.254"
local INET_V6, INET_GW6 = "2001:db8::fffe/64", "2001:db8::fffe"

-- A shell word for S.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a shell command: its output (trimmed) and whether it succeeded.
local function sh(cmd)
  local f = io.popen(cmd .. " 2>&1")
  local out = f:read("a")
  local ok = f:close()
  return (out:gsub("%s+$", "")), ok == true
end

sim.q, sim.sh = q, sh

-- Wall-clock seconds with sub-second precision, for timing steps.
function sim.now()
  local f = io.open("/proc/uptime")
  local up = f and f:read("n")
  if f then f:close() end
  return up or os.time()
end

local function must(ok, err)
  if not ok then error(err, 2) end
  return ok
end

-- opts.prefix: namespace name prefix unique to this run (≤ 12 chars);
-- opts.bin: the zmesh executable; opts.backend: WireGuard backend.
function sim.new(opts)
  local bin = opts.bin or os.getenv("ZMESH_BIN")
  if not bin then
    -- Run by the zmesh host itself (the demo): use that very binary.
    local exe = core.fs.readlink("/proc/self/exe")
    bin = (exe and exe:match("/zmesh$")) and exe or "zmesh"
  end
  if bin:find("/", 1, true) and bin:sub(1, 1) ~= "/" then
    -- Commands run inside a node from another working directory.
    bin = sh("realpath " .. q(bin))
  end
  local self = setmetatable({
    prefix = assert(opts.prefix, "prefix"),
    bin = bin,
    backend = opts.backend or "auto",
    nodes = {}, order = {}, routers = {}, namespaces = {}, mount_ns = {},
    verbose = opts.verbose,
  }, Sim)
  return self
end

function Sim:ns(tag) return self.prefix .. tag end

function Sim:make_ns(tag)
  local name = self:ns(tag)
  must(core.netns.create(name))
  self.namespaces[#self.namespaces + 1] = name
  return name
end

-- The Internet: one bridge, documentation addresses, IPv4 and IPv6.
function Sim:internet()
  local ns = self:make_ns("inet")
  must(core.link.set { ns = ns, name = "lo", up = true })
  must(core.link.bridge { ns = ns, name = "inet0" })
  must(core.link.set { ns = ns, name = "inet0", up = true })
  must(core.addr.add { ns = ns, dev = "inet0", addr = INET_V4 })
  must(core.addr.add { ns = ns, dev = "inet0", addr = INET_V6, nodad = true })
  must(core.sysctl.set(ns, "net.ipv4.ip_forward", 1))
  self.inet = ns
  return ns
end

-- Plug a veth from the Internet bridge into namespace NS as IFNAME.
function Sim:plug(tag, ns, ifname)
  local port = "i-" .. tag
  must(core.link.veth { ns = self.inet, name = port, peer = ifname, peer_ns = ns })
  must(core.link.set { ns = self.inet, name = port, master = "inet0", up = true })
  must(core.link.set { ns = ns, name = ifname, up = true })
end

-- A NAT router (a home router) for hidden nodes: WAN on the Internet,
-- LAN 192.168.<n>.0/24, masquerade out, short UDP conntrack timeouts when
-- opts.udp_timeout is given (they are per namespace).
function Sim:nat_router(tag, opts)
  local n = #self.routers + 1
  local ns = self:make_ns(tag)
  must(core.link.set { ns = ns, name = "lo", up = true })
  self:plug(tag, ns, "wan")
  must(core.addr.add { ns = ns, dev = "wan", addr = opts.wan })
  must(core.route.add { ns = ns, dst = "default", via = INET_GW })
  must(core.link.bridge { ns = ns, name = "lan" })
  must(core.link.set { ns = ns, name = "lan", up = true })
  local lan = string.format("192.168.%d.1/24", n)
  must(core.addr.add { ns = ns, dev = "lan", addr = lan })
  must(core.sysctl.set(ns, "net.ipv4.ip_forward", 1))
  local rules = [[
table ip nat {
  chain postrouting { type nat hook postrouting priority 100; oifname "wan" masquerade; }
}
table ip filter {
  chain forward { type filter hook forward priority 0; policy drop;
    iifname "lan" accept
    ct state established,related accept
  }
}]]
  local out, ok = sh("printf '%s' " .. q(rules) .. " | ip netns exec " .. ns .. " nft -f -")
  if not ok then error("nat router " .. tag .. ": " .. out, 0) end
  if opts.udp_timeout then
    must(core.sysctl.set(ns, "net.netfilter.nf_conntrack_udp_timeout", opts.udp_timeout))
    must(core.sysctl.set(ns, "net.netfilter.nf_conntrack_udp_timeout_stream", opts.udp_timeout))
  end
  local r = { tag = tag, ns = ns, n = n, lan_prefix = string.format("192.168.%d.", n),
    hosts = 10, gateway = string.format("192.168.%d.1", n), wan = opts.wan }
  self.routers[tag] = r
  return r
end

-- A host on the Internet (a server, or an attacker): a namespace on the
-- bridge with address ADDR ("203.0.113.200/24").
function Sim:host(tag, addr)
  local ns = self:make_ns(tag)
  must(core.link.set { ns = ns, name = "lo", up = true })
  self:plug(tag, ns, "eth0")
  must(core.addr.add { ns = ns, dev = "eth0", addr = addr })
  must(core.route.add { ns = ns, dst = "default", via = INET_GW })
  return ns
end

local function mount_ns_id(pid)
  local out = sh("readlink /proc/" .. pid .. "/ns/mnt")
  return out:match("mnt:%[(%d+)%]")
end

-- Start the holder of a node: a private /run inside its own mount
-- namespace, in the node's network namespace.
function Sim:spawn_holder(host_ns)
  local script = "mount -t tmpfs -o mode=0755 zmesh-sim /run && mkdir -p /run/netns /run/wireguard"
    .. " && exec sleep 1000000"
  local out = sh("ip netns exec " .. host_ns .. " unshare --mount --propagation private sh -c "
    .. q(script) .. " >/dev/null 2>&1 & echo $!")
  local pid = tonumber(out)
  if not pid then error("cannot start a node holder: " .. out, 0) end
  local own = mount_ns_id("self")
  for _ = 1, 200 do
    local comm = sh("cat /proc/" .. pid .. "/comm")
    local mnt = mount_ns_id(pid)
    if comm == "sleep" and mnt and mnt ~= own then return pid, mnt end
    sh("sleep 0.01")
  end
  error("the node holder did not come up", 0)
end

-- A node. spec: {id, addr = "203.0.113.11/24" (public), or
-- behind = router tag (hidden), addr6 = "2001:db8::11/64" (optional)}.
function Sim:node(spec)
  local id = assert(spec.id, "id")
  local host = self:make_ns(id)
  must(core.link.set { ns = host, name = "lo", up = true })
  local uplink
  if spec.behind then
    local r = assert(self.routers[spec.behind], "unknown router " .. spec.behind)
    r.hosts = r.hosts + 1
    local port = "l-" .. id
    must(core.link.veth { ns = r.ns, name = port, peer = "eth0", peer_ns = host })
    must(core.link.set { ns = r.ns, name = port, master = "lan", up = true })
    must(core.link.set { ns = host, name = "eth0", up = true })
    uplink = { mode = "macvlan", nic = "eth0",
      addresses = { spec.addr or (r.lan_prefix .. r.hosts .. "/24") }, gateway = r.gateway }
  else
    self:plug(id, host, "eth0")
    uplink = { mode = "macvlan", nic = "eth0", addresses = { (assert(spec.addr, "addr")) },
      gateway = INET_GW }
    if spec.addr6 then
      uplink.addresses[2] = spec.addr6
      uplink.gateway6 = INET_GW6
    end
  end
  local pid, mnt = self:spawn_holder(host)
  self.mount_ns[#self.mount_ns + 1] = mnt
  local node = { id = id, host = host, pid = pid, hidden = spec.behind ~= nil,
    config_path = "/run/zmesh-node.json",
    config = { node_id = id, uplink = uplink, state_dir = "/run/zmesh-state",
      run_dir = "/run/zmesh", wireguard_backend = self.backend } }
  -- Written through the holder's root: inside the node's private /run.
  must(core.fs.write("/proc/" .. pid .. "/root" .. node.config_path,
    json.encode(node.config, { pretty = true }), tonumber("644", 8)))
  self.nodes[id] = node
  self.order[#self.order + 1] = id
  return node
end

-- A shell command inside NODE (its mount and network namespaces).
function Sim:sh(id, cmd)
  local node = assert(self.nodes[id], "unknown node " .. tostring(id))
  return sh(string.format("nsenter -t %d -m -n -- env ZMESH_NODE_CONFIG=%s sh -c %s",
    node.pid, node.config_path, q(cmd)))
end

-- `ip netns exec NS CMD` inside NODE.
function Sim:exec(id, ns, cmd)
  return self:sh(id, "ip netns exec " .. ns .. " " .. cmd)
end

-- Call a zmesh entry point inside NODE: the decoded result, or nil and
-- the message zmesh printed.
function Sim:call(id, entry, params)
  local out, ok = self:sh(id, self.bin .. " call " .. entry .. " " ..
    q(json.encode(params or json.object())))
  if self.verbose then io.stderr:write("[", id, "] ", entry, ": ", out, "\n") end
  if not ok then return nil, out end
  local res, err = json.decode(out)
  if res == nil then return nil, "bad JSON from zmesh: " .. tostring(err) .. ": " .. out end
  return res
end

-- Pids of processes living in any of this run's node mount namespaces.
function Sim:node_processes()
  local pids = {}
  for _, mnt in ipairs(self.mount_ns) do
    local out = sh("find /proc/[0-9]*/ns/mnt -maxdepth 0 -lname 'mnt:\\[" .. mnt .. "\\]' 2>/dev/null")
    for line in out:gmatch("[^\n]+") do
      local pid = line:match("^/proc/(%d+)/ns/mnt$")
      if pid then pids[#pids + 1] = tonumber(pid) end
    end
  end
  return pids
end

-- Tear everything down: each node stops its NRs and ndmz, every process in
-- the nodes' mount namespaces ends, then the namespaces go. Best effort all
-- the way: this runs after failures too.
function Sim:destroy()
  for _, id in ipairs(self.order) do
    pcall(self.call, self, id, "node.stop", {})
  end
  for _, sig in ipairs({ "TERM", "KILL" }) do
    local pids = self:node_processes()
    if #pids == 0 then break end
    local list = {}
    for i, p in ipairs(pids) do list[i] = tostring(p) end
    sh("kill -" .. sig .. " " .. table.concat(list, " ") .. " 2>/dev/null")
    for _ = 1, 100 do
      if #self:node_processes() == 0 then break end
      sh("sleep 0.02")
    end
  end
  for i = #self.namespaces, 1, -1 do
    if core.netns.exists(self.namespaces[i]) then core.netns.delete(self.namespaces[i], 500) end
  end
end

-- What is left of this run: named namespaces and node processes.
function Sim:leftovers()
  local left = {}
  for _, name in ipairs(core.netns.list() or {}) do
    if name:sub(1, #self.prefix) == self.prefix then left[#left + 1] = "namespace " .. name end
  end
  for _, pid in ipairs(self:node_processes()) do
    left[#left + 1] = "process " .. pid .. " (" .. sh("cat /proc/" .. pid .. "/comm") .. ")"
  end
  return left
end

return sim
