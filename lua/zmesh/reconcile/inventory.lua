-- Inventory: what the kernel has now, for every namespace and object the
-- desired state mentions. Reads only.
local names = require "zmesh.node.names"
local resources = require "zmesh.reconcile.resources"

local inventory = {}

local HOST, core_ns = resources.HOST, resources.core_ns

local function ns_mentioned(desired)
  local set, list = {}, {}
  local function add(ns)
    if ns and not set[ns] then
      set[ns] = true
      list[#list + 1] = ns
    end
  end
  for _, r in ipairs(desired) do
    add(r.kind == "netns" and r.name or r.ns)
    add(r.peer_ns)
    add(r.parent_ns)
    add(r.from_ns)
    add(r.birth_ns)
  end
  return list
end

local function must(value, err)
  if value == nil then error(err, 0) end
  return value
end

-- Per namespace, what the desired state names in it: {links = {name →
-- true}, routes = true when it has routes}, and which namespaces it owns
-- whole (made or removed by it, or whose routes it prunes).
local function mentioned_objects(desired, opts)
  local per, whole = {}, {}
  local function at(ns)
    per[ns] = per[ns] or { links = {} }
    return per[ns]
  end
  local function link(ns, name)
    if ns and name then at(ns).links[name] = true end
  end
  for _, r in ipairs(desired) do
    if r.kind == "netns" then whole[r.name] = true end
    if r.kind == "link" then
      link(r.ns, r.name)
      link(r.birth_ns, r.name)
      link(r.from_ns, r.from)
      link(r.peer_ns, r.peer)
      link(r.parent_ns, r.parent)
      link(r.ns, r.master)
    elseif r.kind == "addr" then
      link(r.ns, r.dev)
    elseif r.kind == "route" then
      at(r.ns).routes = true
    end
  end
  for _, ns in ipairs(opts and opts.own_routes or {}) do whole[ns] = true end
  return per, whole
end

-- Read one namespace whole: links by name, addresses by link, main routes.
local function read_ns(core, ns)
  local st = { links = {}, addrs = {}, routes = {} }
  local cns = core_ns(ns)
  for _, l in ipairs(must(core.link.dump(cns))) do st.links[l.name] = l end
  for _, a in ipairs(must(core.addr.dump(cns))) do
    st.addrs[a.dev] = st.addrs[a.dev] or {}
    st.addrs[a.dev][#st.addrs[a.dev] + 1] = a
  end
  st.routes = must(core.route.dump(cns))
  return st
end

-- Read only what WANT names in a namespace others share (the ndmz with a
-- veth per NR, the host): a whole read there grows with every NR.
local function read_named(core, ns, want)
  local st = { links = {}, addrs = {}, routes = {} }
  local cns = core_ns(ns)
  local by_index = {}
  for name in pairs(want.links) do
    local l, err, ename = core.link.get(cns, name)
    if l then
      st.links[name], by_index[l.index] = l, name
      st.addrs[name] = must(core.addr.dump(cns, name))
    elseif ename ~= "ENODEV" then
      error(err, 0)
    end
  end
  for _, l in pairs(st.links) do l.master = l.master_index and by_index[l.master_index] end
  if want.routes then st.routes = must(core.route.dump(cns)) end
  return st
end

-- What is at PATH: "file", "dir", "socket", … or nil.
local function file_type(core, path)
  local st = core.fs.stat(path)
  return st and st.type
end

-- inv.netns[name] = true for every live named namespace, inv.stale[name]
-- = true for a mentioned name that is no namespace (a kill between making
-- the name and mounting it, or unmounting and removing it, leaves one);
-- inv.ns[name] = {links, addrs, routes} for the mentioned ones that exist
-- ("host" always does); inv.sysctl[key]; inv.wg[key] = device or false;
-- inv.daemon[ifname] = pid of the userspace WireGuard serving it, or
-- false; inv.strays[ifname] = pids of its daemons still starting (no
-- socket yet) in its birth namespace; inv.files[path] = type of what is there (mentioned files and
-- WireGuard sockets); inv.nft[key] = {table = core.nft.dump or nil}.
function inventory.read(core, desired, opts)
  local inv = { netns = {}, stale = {}, ns = {}, sysctl = {}, wg = {}, nft = {},
    daemon = {}, strays = {}, files = {} }
  local named, whole = mentioned_objects(desired, opts)
  for _, name in ipairs(must(core.netns.list())) do inv.netns[name] = true end
  for _, ns in ipairs(ns_mentioned(desired)) do
    if ns ~= HOST and inv.netns[ns] and not core.netns.exists(ns) then
      inv.netns[ns], inv.stale[ns] = nil, true
    end
    if whole[ns] and inv.netns[ns] then
      inv.ns[ns] = read_ns(core, ns)
    elseif ns == HOST or inv.netns[ns] then
      inv.ns[ns] = read_named(core, ns, named[ns] or { links = {} })
    end
  end
  for _, r in ipairs(desired) do
    local st = inv.ns[r.ns]
    if r.kind == "link" and r.type == "wireguard" then
      inv.daemon[r.name] = core.wg.pid(r.name) or false
      local sock = names.wg_socket(r.name)
      inv.files[sock] = file_type(core, sock)
      -- A daemon an interrupted create left still starting has no socket.
      -- Its TUN is made in the link's namespace before it starts: with no
      -- such namespace there is none to find for a create (a scan of
      -- every process, which grows with the node's NRs).
      local birth = r.birth_ns or r.ns
      local could = r.absent or r.ns == HOST or inv.netns[r.ns]
      if not inv.daemon[r.name] and could and (birth == HOST or inv.netns[birth]) then
        local pids = core.wg.strays { birth_ns = core_ns(birth), name = r.name }
        inv.strays[r.name] = pids and #pids > 0 and pids or nil
      end
    end
    if r.kind == "file" then
      inv.files[r.path] = file_type(core, r.path)
    elseif r.absent then
      -- Nothing more to read for what must go.
    elseif r.kind == "sysctl" and st then
      inv.sysctl[resources.key(r)] = core.sysctl.get(core_ns(r.ns), r.key)
    elseif r.kind == "wg" and st and st.links[r.name] then
      inv.wg[resources.key(r)] = core.wg.get({ ns = core_ns(r.ns), name = r.name }) or false
    elseif r.kind == "nft" and st then
      inv.nft[resources.key(r)] = {
        table = core.nft.dump(core_ns(r.ns), { family = r.ruleset.family, table = r.ruleset.table }),
      }
    end
  end
  return inv
end

return inventory
