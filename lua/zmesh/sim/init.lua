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
    nodes = {}, order = {}, routers = {}, router_count = 0, namespaces = {},
    -- The run's namespace identities ("mnt:[…]", "net:[…]" → what it is),
    -- by which the teardown finds the run's processes.
    mnt_ids = {}, net_ids = {},
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
  -- self.routers is keyed by tag: count the routers apart.
  self.router_count = self.router_count + 1
  local n = self.router_count
  if n > 254 then error("nat router " .. tag .. ": no LAN left (254 routers at most)", 0) end
  local ns = self:make_ns(tag)
  must(core.link.set { ns = ns, name = "lo", up = true })
  self:plug(tag, ns, "wan")
  must(core.addr.add { ns = ns, dev = "wan", addr = opts.wan })
  must(core.route.add { ns = ns, family = 4, dst = "default", via = INET_GW })
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
  must(core.route.add { ns = ns, family = 4, dst = "default", via = INET_GW })
  return ns
end

-- The namespace of kind KIND ("mnt", "net") that process PID lives in, as
-- its identity "mnt:[4026531841]"; nil when the process is gone (or a zombie).
local function ns_id(pid, kind)
  local id = core.fs.readlink("/proc/" .. pid .. "/ns/" .. kind)
  return id and id:match("^" .. kind .. ":%[%d+%]$") and id or nil
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
  local own = ns_id("self", "mnt")
  for _ = 1, 200 do
    local comm = sh("cat /proc/" .. pid .. "/comm")
    local mnt = ns_id(pid, "mnt")
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
  self.mnt_ids[mnt] = "the mount namespace of node " .. id
  -- state_dir outside the node's /run, as on a real node: it survives a
  -- simulated power loss (Sim:power_loss), /run does not.
  local state_dir = self:state_root() .. "/" .. id
  local node = { id = id, host = host, pid = pid, mnt = mnt, hidden = spec.behind ~= nil,
    config_path = "/run/zmesh-node.json",
    config = { node_id = id, uplink = uplink, state_dir = state_dir,
      run_dir = "/run/zmesh", wireguard_backend = self.backend,
      reconcile_interval = spec.reconcile_interval } }
  -- Written through the holder's root: inside the node's private /run.
  must(core.fs.write("/proc/" .. pid .. "/root" .. node.config_path,
    json.encode(node.config, { pretty = true }), tonumber("644", 8)))
  self.nodes[id] = node
  self.order[#self.order + 1] = id
  return node
end

-- Where the nodes' state_dirs live on the machine: one directory of this
-- run (removed by destroy).
function Sim:state_root()
  local dir = "/tmp/" .. self.prefix .. "state"
  must(core.fs.mkdir(dir, tonumber("700", 8)))
  return dir
end

-- Write the node config of ID again (after changing S.nodes[id].config).
function Sim:write_config(id)
  local node = self.nodes[id]
  must(core.fs.write("/proc/" .. node.pid .. "/root" .. node.config_path,
    json.encode(node.config, { pretty = true }), tonumber("644", 8)))
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
  -- Parameters are an object, also an empty one (`{}` alone could be []).
  if params == nil or (next(params) == nil and getmetatable(params) == nil) then
    params = json.object()
  end
  local out, ok = self:sh(id, self.bin .. " call " .. entry .. " " .. q(json.encode(params)))
  if self.verbose then io.stderr:write("[", id, "] ", entry, ": ", out, "\n") end
  if not ok then return nil, out end
  local res, err = json.decode(out)
  if res == nil then return nil, "bad JSON from zmesh: " .. tostring(err) .. ": " .. out end
  return res
end

-- The identities of the namespaces named at PATHS ({path → label}), by
-- `stat -L` of each name (a bind mount of the namespace): {"net:[ino]" → label}.
local function named_ids(paths)
  local words = {}
  for path in pairs(paths) do words[#words + 1] = q(path) end
  if #words == 0 then return {} end
  local ids = {}
  local out = sh("stat -L -c '%i %n' -- " .. table.concat(words, " ") .. " 2>/dev/null")
  for ino, path in out:gmatch("(%d+) ([^\n]+)") do
    if paths[path] then ids["net:[" .. ino .. "]"] = paths[path] end
  end
  return ids
end

-- Is the holder of NODE still the one we started (its pid not reused)?
local function holder_alive(node)
  return ns_id(node.pid, "mnt") == node.mnt
end

-- Learn the run's network namespaces as they are now: the named ones this
-- run made on the machine, each node's root namespace, and every namespace
-- named in a node's private /run/netns (its NRs, its ndmz, its containers),
-- reached through the holder's root while it lives: those names go with the
-- holder, so the teardown calls this before any holder ends. What was once
-- learnt is kept.
function Sim:learn_namespaces()
  local own = ns_id("self", "net")
  local function keep(ids)
    for nsid, label in pairs(ids) do
      if nsid ~= own then self.net_ids[nsid] = label end
    end
  end
  local paths = {}
  for _, name in ipairs(self.namespaces) do paths["/run/netns/" .. name] = "namespace " .. name end
  keep(named_ids(paths))
  for _, id in ipairs(self.order) do
    local node = self.nodes[id]
    if holder_alive(node) then
      local dir = "/proc/" .. node.pid .. "/root/run/netns"
      paths = {}
      for _, name in ipairs(core.fs.list(dir) or {}) do
        paths[dir .. "/" .. name] = "namespace " .. name .. " of node " .. id
      end
      local ids = named_ids(paths)
      -- A reused pid would show another process's /run: keep only what
      -- was read while the holder was still ours.
      if holder_alive(node) then keep(ids) end
    end
  end
  return self.net_ids
end

-- The first line of a file, or nil.
local function first_line(path)
  local f = io.open(path)
  if not f then return nil end
  local line = f:read("l")
  f:close()
  return line
end

-- Every process of this run, from /proc: those in a node's mount namespace
-- (what runs through S:sh), those in one of the run's network namespaces,
-- whatever their mount namespace (`ip netns exec` makes a new one), and
-- the children of either (an `unshare -n` below an `ip netns exec`).
-- A list of {pid =, comm =, where = why it is the run's}.
function Sim:processes()
  local own_mnt, own_net = ns_id("self", "mnt"), ns_id("self", "net")
  local where, parent, pids = {}, {}, {}
  for _, name in ipairs(core.fs.list("/proc") or {}) do
    local pid = tonumber(name:match("^%d+$"))
    local mnt, net = pid and ns_id(pid, "mnt"), pid and ns_id(pid, "net")
    if mnt or net then
      pids[#pids + 1] = pid
      where[pid] = (mnt ~= own_mnt and self.mnt_ids[mnt]) or (net ~= own_net and self.net_ids[net])
        or nil
      local stat = first_line("/proc/" .. pid .. "/stat")
      parent[pid] = stat and tonumber(stat:match(".*%)%s+%S+%s+(%d+)"))
    end
  end
  -- Never the caller, nor what it runs under.
  local me = tonumber(core.fs.readlink("/proc/self") or "")
  while me and me > 0 and where[me] ~= false do
    where[me] = false
    me = parent[me]
  end
  -- Descendants: follow each chain of parents up to one of the run's.
  local function of_run(pid, depth)
    if where[pid] ~= nil or depth > 64 then return where[pid] end
    local ppid = parent[pid]
    local found = ppid and ppid > 1 and of_run(ppid, depth + 1)
    where[pid] = found and ("a child of process " .. ppid) or false
    return where[pid]
  end
  local procs = {}
  for _, pid in ipairs(pids) do
    if of_run(pid, 0) then
      procs[#procs + 1] = { pid = pid, comm = first_line("/proc/" .. pid .. "/comm") or "?",
        where = where[pid] }
    end
  end
  return procs
end

-- Pids of every process of this run (see Sim:processes).
function Sim:node_processes()
  local pids = {}
  for i, p in ipairs(self:processes()) do pids[i] = p.pid end
  return pids
end

-- Signal every process of the run, and again whatever is left (or new),
-- until nothing is: TERM first, with a grace time, then KILL. True once
-- nothing is left.
function Sim:end_processes()
  for round = 1, 10 do
    self:learn_namespaces()
    local pids = self:node_processes()
    if #pids == 0 then return true end
    local list = {}
    for i, p in ipairs(pids) do list[i] = tostring(p) end
    sh("kill -" .. (round == 1 and "TERM" or "KILL") .. " " .. table.concat(list, " ") .. " 2>/dev/null")
    for _ = 1, round == 1 and 50 or 25 do
      local alive = false
      for _, p in ipairs(pids) do
        if ns_id(p, "mnt") then alive = true break end
      end
      if not alive then break end
      sh("sleep 0.02")
    end
  end
  return #self:node_processes() == 0
end

-- Tear everything down: each node stops its NRs and ndmz, every process of
-- the run ends (found by namespace, see Sim:processes), then the namespaces
-- go. Best effort all the way: this runs after failures too.
function Sim:destroy()
  -- Before anything ends: the names inside the nodes go with their holders.
  self:learn_namespaces()
  for _, id in ipairs(self.order) do
    if holder_alive(self.nodes[id]) then pcall(self.call, self, id, "node.stop", {}) end
  end
  self:end_processes()
  for i = #self.namespaces, 1, -1 do
    if core.netns.exists(self.namespaces[i]) then core.netns.delete(self.namespaces[i], 500) end
  end
  -- Deleting a name ends its processes too; anything that slipped in
  -- meanwhile ends here.
  self:end_processes()
  os.execute("rm -rf " .. q("/tmp/" .. self.prefix .. "state"))
end

-- What is left of this run: named namespaces and processes (those of
-- Sim:processes, in namespaces learnt before and now), one line each.
function Sim:leftovers()
  self:learn_namespaces()
  local left = {}
  for _, name in ipairs(core.netns.list() or {}) do
    if name:sub(1, #self.prefix) == self.prefix then left[#left + 1] = "namespace " .. name end
  end
  for _, p in ipairs(self:processes()) do
    left[#left + 1] = "process " .. p.pid .. " (" .. p.comm .. ") in " .. p.where
  end
  if core.fs.stat("/tmp/" .. self.prefix .. "state") then
    left[#left + 1] = "directory /tmp/" .. self.prefix .. "state"
  end
  return left
end

-- A power loss of node ID: every process of the node ends at once
-- (SIGKILL), every namespace it had goes, its /run is emptied; its
-- state_dir stays. Its NIC (the veth onto the Internet or the LAN) stays.
function Sim:power_loss(id)
  local node = assert(self.nodes[id], "unknown node " .. tostring(id))
  self:learn_namespaces()
  local inner = {}
  local dir = "/proc/" .. node.pid .. "/root/run/netns"
  local paths = {}
  for _, name in ipairs(core.fs.list(dir) or {}) do paths[dir .. "/" .. name] = name end
  for nsid in pairs(named_ids(paths)) do inner[nsid] = true end
  -- The node's processes: in its mount namespace (not its holder), or in
  -- one of its namespaces.
  for _ = 1, 20 do
    local victims = {}
    for _, name in ipairs(core.fs.list("/proc") or {}) do
      local pid = tonumber(name:match("^%d+$"))
      if pid and pid ~= node.pid and (ns_id(pid, "mnt") == node.mnt or inner[ns_id(pid, "net") or ""]) then
        victims[#victims + 1] = tostring(pid)
      end
    end
    if #victims == 0 then break end
    sh("kill -KILL " .. table.concat(victims, " ") .. " 2>/dev/null; sleep 0.05")
  end
  local out, ok = self:sh(id, "for n in $(ls /run/netns); do ip netns delete $n; done; "
    .. "umount -l /run && mount -t tmpfs -o mode=0755 zmesh-sim /run && mkdir -p /run/netns /run/wireguard")
  if not ok then error("power loss of " .. id .. ": " .. out, 0) end
  self:write_config(id)
end

-- Start `zmesh daemon` in node ID, in the background (its log in the
-- node's /run/zmesh-daemon.log), and wait until its socket answers.
-- Returns its pid.
function Sim:daemon_start(id, timeout)
  local out, ok = self:sh(id, string.format(
    "setsid %s daemon > /run/zmesh-daemon.log 2>&1 < /dev/null & echo $!", self.bin))
  if not ok then error("daemon of " .. id .. ": " .. out, 0) end
  local pid = tonumber(out:match("(%d+)%s*$"))
  local deadline = sim.now() + (timeout or 10)
  while sim.now() < deadline do
    local status = self:api(id, "GET", "/v1/status")
    if status then return pid end
    sh("sleep 0.02")
  end
  error("the daemon of " .. id .. " did not answer: " .. (self:sh(id, "cat /run/zmesh-daemon.log")), 0)
end

-- The pid of node ID's daemon, or nil. The nodes share the machine's
-- PID namespace, so pgrep sees every node's daemon: the one whose mount
-- namespace is the node's is its own.
function Sim:daemon_pid(id)
  local mnt = self.nodes[id].mnt
  for pid in sh("pgrep -f '^" .. self.bin .. " daemon$'"):gmatch("%d+") do
    if ns_id(pid, "mnt") == mnt then return tonumber(pid) end
  end
  return nil
end

-- SIGHUP to node ID's daemon: it reloads its node config.
function Sim:daemon_reload(id)
  local pid = self:daemon_pid(id)
  if not pid then error("node " .. id .. " has no daemon running", 2) end
  sh("kill -HUP " .. pid)
end

-- Stop node ID's daemon with SIG (default TERM) and wait until it is gone.
function Sim:daemon_stop(id, sig, pid)
  pid = pid or self:daemon_pid(id)
  if not pid then return end
  sh("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
  for _ = 1, 500 do
    if not ns_id(pid, "mnt") then break end
    sh("sleep 0.01")
  end
end

-- An HTTP request to node ID's daemon with curl(1) over its unix socket
-- (what an operator or provisioning would do): status, decoded body (or
-- the text when it is not JSON); nil and a message when nobody answers.
function Sim:api(id, method, path, body)
  local node = self.nodes[id]
  local socket = node.config.socket or "/run/zmesh/zmesh.sock"
  local cmd = string.format("curl -s -S -o /run/curl.out -w '%%{http_code}' -X %s --unix-socket %s %s",
    method, q(socket), q("http://zmesh" .. path))
  if body then
    -- An empty table is an object here (`{}` alone would encode as []).
    if type(body) == "table" and next(body) == nil and getmetatable(body) == nil then
      body = json.object()
    end
    must(core.fs.write("/proc/" .. node.pid .. "/root/run/curl.in",
      type(body) == "string" and body or json.encode(body), tonumber("600", 8)))
    cmd = cmd .. " -H 'Content-Type: application/json' --data-binary @/run/curl.in"
  end
  local code, ok = self:sh(id, cmd)
  if not ok or not code:match("^%d+$") or code == "000" then return nil, code end
  local text = self:sh(id, "cat /run/curl.out")
  local v = json.decode(text)
  return tonumber(code), v == nil and text or v
end

-- Node ID's cable pulled (or put back, UP = true): its NIC's far end
-- (on the Internet bridge, or on its NAT router's LAN) goes down. The node
-- keeps running, unreachable: what the rest of the mesh sees of a dead node.
function Sim:cable(id, up)
  local node = assert(self.nodes[id], "unknown node " .. tostring(id))
  local ns, port = self.inet, "i-" .. id
  if node.hidden then
    for _, r in pairs(self.routers) do
      if core.link.get(r.ns, "l-" .. id) then ns, port = r.ns, "l-" .. id end
    end
  end
  must(core.link.set { ns = ns, name = port, up = up and true or false })
end

-- nft rules in NAT router TAG's own table "fault" (created on first use):
-- RULES (nft syntax) in a forward chain, e.g. "ip daddr 203.0.113.11 drop"
-- or "numgen random mod 10 < 3 drop"; nil removes the table.
function Sim:router_fault(tag, rules)
  local r = assert(self.routers[tag], "unknown router " .. tostring(tag))
  local script = "table inet fault\ndelete table inet fault\n"
  if rules then
    script = script .. "table inet fault {\n  chain forward { type filter hook forward priority -10; policy accept;\n"
      .. rules .. "\n  }\n}\n"
  end
  local out, ok = sh("printf '%s' " .. q(script) .. " | ip netns exec " .. r.ns .. " nft -f -")
  if not ok then error("router " .. tag .. " fault: " .. out, 0) end
end

return sim
