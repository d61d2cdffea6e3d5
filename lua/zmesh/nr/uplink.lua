-- The NR's address on the ndmz bridge: 100.127.x.y/16, allocated per node.
-- An NR keeps the address it has; a new one takes the lowest free.
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"

local uplink = {}

local RANGE = ip.parse_cidr(names.NR_UPLINK_RANGE)

-- The uplink address of NR namespace NS now, or nil.
local function current(core, ns)
  for _, a in ipairs(core.addr.dump(ns, names.UPLINK) or {}) do
    local p = ip.parse_cidr(a.addr)
    if p and ip.contains(RANGE, p) then return a.addr end
  end
end

-- The addresses this process read, by namespace identity (name, inode
-- and inode time of its nsfs file): the one writer gives an NR its
-- address once and never changes it, so a long-lived writer (the
-- daemon's) reads each NR namespace once, not once per new NR. A
-- namespace made again is another inode, or the same number at another
-- time.
local seen = {}

local function current_cached(core, ns)
  local st = core.fs.stat(names.NETNS_DIR .. "/" .. ns)
  local key = st and st.ino and st.mtime_ns and (ns .. " " .. st.ino .. " " .. st.mtime_ns)
  if key and seen[key] then return seen[key] end
  local a = current(core, ns)
  if key and a then seen[key] = a end
  return a
end

-- Reads every NR namespace (read-only) and picks NET_ID's address.
function uplink.allocate(core, net_id)
  local mine = names.nr_ns(net_id)
  -- An NR that has its address keeps it: one read, not one per NR.
  if core.netns.exists(mine) then
    local a = current(core, mine)
    if a then return a end
  end
  local used = {}
  for _, ns in ipairs(core.netns.list() or {}) do
    if ns:match("^n%-[a-z0-9]+$") and ns ~= mine then
      local a = current_cached(core, ns)
      if a then used[a] = true end
    end
  end
  -- .0 is the network, .1 the ndmz; the last is the broadcast address.
  for n = 2, ip.subnet_count(RANGE, 32) - 2 do
    local text = ip.format_addr(ip.host(RANGE, n)) .. "/16"
    if not used[text] then return text end
  end
  error("no free address left in " .. names.NR_UPLINK_RANGE, 0)
end

-- What an NR's MTU derives from (zmesh.nr.desired.mtu): the node's
-- uplink (the ndmz's "public" link) as the kernel has it: {mtu, ipv6 =
-- it has a global IPv6 address}.
function uplink.node_link(core)
  local out = { mtu = 1500, ipv6 = false }
  if not core.netns.exists(names.NDMZ) then return out end
  local l = core.link.get(names.NDMZ, names.UPLINK)
  if l and l.mtu and l.mtu > 0 then out.mtu = l.mtu end
  for _, a in ipairs(core.addr.dump(names.NDMZ, names.UPLINK) or {}) do
    if a.family == 6 and a.scope == "global" then out.ipv6 = true end
  end
  return out
end

return uplink
