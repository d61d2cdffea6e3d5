-- Diff: desired resources against the inventory, into an ordered list of
-- actions. Pure: no core calls. Each action is {op = …, text = "one line
-- for plan", …arguments}; reconcile.apply carries them out.
--
-- What is pruned: addresses (global scope) on every link the desired state
-- declares; static routes in the namespaces listed in opts.own_routes; wg
-- peers not desired. Links and namespaces the desired state does not
-- mention are left alone: other apply runs own them (an NR's containers).
local firewall = require "zmesh.firewall"
local names = require "zmesh.node.names"
local resources = require "zmesh.reconcile.resources"

local diff = {}

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

local function same_set(a, b)
  local sa, sb = set_of(a), set_of(b)
  for k in pairs(sa) do if not sb[k] then return false end end
  for k in pairs(sb) do if not sa[k] then return false end end
  return true
end

local function at(ns, name) return string.format("%s@%s", name, ns) end

local function link_create(r)
  if r.type == "bridge" then
    return { op = "link_bridge", ns = r.ns, name = r.name, mtu = r.mtu,
      text = "create bridge " .. at(r.ns, r.name) }
  elseif r.type == "veth" then
    return { op = "link_veth", ns = r.ns, name = r.name, peer = r.peer,
      peer_ns = r.peer_ns, mtu = r.mtu,
      text = string.format("create veth %s <-> %s", at(r.ns, r.name), at(r.peer_ns, r.peer)) }
  elseif r.type == "macvlan" then
    return { op = "link_macvlan", ns = r.ns, name = r.name, parent = r.parent,
      parent_ns = r.parent_ns, mtu = r.mtu,
      text = string.format("create macvlan %s on %s", at(r.ns, r.name), at(r.parent_ns, r.parent)) }
  elseif r.type == "moved" then
    return { op = "link_move", ns = r.from_ns, name = r.from, netns = r.ns, rename = r.name,
      text = string.format("move %s to %s", at(r.from_ns, r.from), at(r.ns, r.name)) }
  elseif r.type == "wireguard" then
    return { op = "wg_create", ns = r.ns, name = r.name, birth_ns = r.birth_ns,
      mtu = r.mtu, backend = r.backend, log = r.log,
      text = string.format("create wireguard %s (born in %s)", at(r.ns, r.name), r.birth_ns) }
  end
  error("unknown link type " .. tostring(r.type), 0)
end

local function kind_matches(r, actual)
  if r.type == "moved" or r.type == "existing" then return true end
  if r.type == "veth_end" then return actual.kind == "veth" end
  if r.type == "wireguard" then return actual.kind == "tun" or actual.kind == "wireguard" end
  return actual.kind == r.type
end

-- Settings of an existing (or just created) link that differ.
local function link_settings(r, actual, created)
  local change, what = {}, {}
  if r.mtu and (created or actual.mtu ~= r.mtu) then
    change.mtu = r.mtu
    what[#what + 1] = "mtu " .. r.mtu
  end
  if r.master and (created or actual.master ~= r.master) then
    change.master = r.master
    what[#what + 1] = "master " .. r.master
  end
  if r.up ~= nil and (created or actual.up ~= r.up) then
    change.up = r.up
    what[#what + 1] = r.up and "up" or "down"
  end
  if #what == 0 then return nil end
  change.op, change.ns, change.name = "link_set", r.ns, r.name
  change.text = string.format("set %s %s", at(r.ns, r.name), table.concat(what, ", "))
  return change
end

-- A WireGuard interface an interrupted apply left half-made: its daemon
-- started (link still in the birth namespace), not yet moved into R.ns.
local function half_made_wireguard(r, inv, out)
  local birth = r.birth_ns and inv.ns[r.birth_ns]
  local in_birth = birth and r.birth_ns ~= r.ns and birth.links[r.name]
  if not in_birth and not inv.daemon[r.name] and not inv.strays[r.name] then return end
  out[#out + 1] = { op = "wg_delete", ns = in_birth and r.birth_ns or r.ns, name = r.name,
    birth_ns = birth and r.birth_ns, missing_ok = true,
    text = string.format("remove half-made wireguard %s (an interrupted apply left it)",
      at(in_birth and r.birth_ns or r.ns, r.name)) }
end

-- Returns the links it deletes and makes again ("ns name" → true): what
-- the inventory saw on them (addresses, routes through them) goes with
-- them, and is to be made again.
local function diff_links(desired, inv, out)
  local remade = {}
  for _, r in ipairs(desired) do
    if r.kind == "link" and not r.absent then
      local st = inv.ns[r.ns]
      local actual = st and st.links[r.name]
      local create
      if actual and not kind_matches(r, actual) then
        out[#out + 1] = { op = "link_delete", ns = r.ns, name = r.name,
          text = string.format("delete %s (a %s, not a %s)", at(r.ns, r.name),
            actual.kind or "device", r.type) }
        actual, remade[r.ns .. " " .. r.name] = nil, true
      end
      if actual and r.type == "wireguard" and inv.wg["wg " .. r.ns .. " " .. r.name] == false then
        -- The link is there but nothing answers for it (its daemon died):
        -- made again from scratch.
        create = link_create(r)
        create.replace_stale = true
        create.text = string.format("recreate wireguard %s (it does not answer)", at(r.ns, r.name))
        actual, remade[r.ns .. " " .. r.name] = nil, true
      elseif not actual and r.type == "moved" and r.optional
          and not (inv.ns[r.from_ns] and inv.ns[r.from_ns].links[r.from]) then
        -- Nothing to take over (an optional move: the NIC going home).
        goto next_link
      elseif not actual and r.type ~= "existing" and r.type ~= "veth_end" then
        -- "existing" links come with the namespace (lo); a "veth_end" is
        -- made with its other end, which sorts before it.
        if r.type == "wireguard" then half_made_wireguard(r, inv, out) end
        create = link_create(r)
      end
      out[#out + 1] = create
      out[#out + 1] = link_settings(r, actual or {}, actual == nil)
    end
    ::next_link::
  end
  return remade
end

-- Removals first: a new IPv4 address in the subnet of an old one is a
-- secondary, and the kernel drops secondaries (and the routes over the
-- subnet) with the primary. Returns the namespaces whose IPv4
-- addresses change: their routes are put back after (see diff_routes).
local function diff_addrs(desired, inv, remade, out)
  local want, managed, adds, readdressed, removed4 = {}, {}, {}, {}, {}
  for _, r in ipairs(desired) do
    if r.kind == "link" and not r.absent and not r.keep_addrs then
      managed[r.ns .. " " .. r.name] = r
    end
    if r.kind == "addr" then
      want[r.ns .. " " .. r.dev .. " " .. r.addr] = true
      local st = not remade[r.ns .. " " .. r.dev] and inv.ns[r.ns]
      local have = false
      for _, a in ipairs(st and st.addrs[r.dev] or {}) do
        if a.addr == r.addr then have = true end
      end
      if not have then
        adds[#adds + 1] = { op = "addr_add", ns = r.ns, dev = r.dev, addr = r.addr,
          text = string.format("add address %s to %s", r.addr, at(r.ns, r.dev)) }
      end
    end
  end
  local keys = {}
  for key in pairs(managed) do keys[#keys + 1] = key end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local r = managed[key]
    local st = not remade[key] and inv.ns[r.ns]
    for _, a in ipairs(st and st.addrs[r.name] or {}) do
      if a.scope == "global" and not want[r.ns .. " " .. r.name .. " " .. a.addr] then
        out[#out + 1] = { op = "addr_delete", ns = r.ns, dev = r.name, addr = a.addr,
          text = string.format("remove address %s from %s", a.addr, at(r.ns, r.name)) }
        if not a.addr:find(":", 1, true) then removed4[key] = true end
      end
    end
  end
  -- An IPv4 address replaced by another (a container re-addressed):
  -- the routes over the old one go with it.
  for _, a in ipairs(adds) do
    if removed4[a.ns .. " " .. a.dev] and not a.addr:find(":", 1, true) then readdressed[a.ns] = true end
  end
  table.move(adds, 1, #adds, #out + 1, out)
  return readdressed
end

-- "route default (IPv6) via fe80::1 dev public in ndmz": the family is
-- said for IPv6 defaults, where the text alone does not tell it.
local function route_text(verb, ns, family, dst, via, dev)
  return string.format("%sroute %s%s%s%s in %s", verb, dst,
    (dst == "default" and family == 6) and " (IPv6)" or "",
    via and (" via " .. via) or "", dev and (" dev " .. dev) or "", ns)
end

local function diff_routes(desired, inv, opts, remade, readdressed, out)
  local want = {}
  local function gone(ns, a) return a.dev ~= nil and remade[ns .. " " .. a.dev] end
  for _, r in ipairs(desired) do
    if r.kind == "route" and not r.absent then
      if r.family ~= 4 and r.family ~= 6 then
        error("route " .. tostring(r.dst) .. " in " .. tostring(r.ns) .. " has no family", 0)
      end
      want[r.ns .. " " .. r.family .. " " .. r.dst] = true
      local st = inv.ns[r.ns]
      -- (An IPv4 address removed there takes IPv4 routes with it.)
      local ok = false
      local dropped = readdressed[r.ns] and r.family == 4
      for _, a in ipairs(not dropped and st and st.routes or {}) do
        if a.family == r.family and a.dst == r.dst and a.via == r.via
           and (r.dev == nil or a.dev == r.dev) and not gone(r.ns, a) then
          ok = true
        end
      end
      if not ok then
        out[#out + 1] = { op = "route_replace", ns = r.ns, family = r.family, dst = r.dst,
          via = r.via, dev = r.dev, text = route_text("", r.ns, r.family, r.dst, r.via, r.dev) }
      end
    end
  end
  for _, ns in ipairs(opts.own_routes or {}) do
    local st = inv.ns[ns]
    for _, a in ipairs(st and st.routes or {}) do
      if a.protocol ~= "kernel" and not want[ns .. " " .. a.family .. " " .. a.dst] and not gone(ns, a) then
        out[#out + 1] = { op = "route_delete", ns = ns, family = a.family, dst = a.dst,
          via = a.via, dev = a.dev, text = route_text("remove ", ns, a.family, a.dst, a.via, a.dev) }
      end
    end
  end
end

local function peer_changes(want, have)
  if not have then return true end
  if not same_set(want.allowed_ips, have.allowed_ips) then return true end
  if want.endpoint and want.endpoint ~= have.endpoint then return true end
  if (want.persistent_keepalive or 0) ~= (have.persistent_keepalive or 0) then return true end
  return false
end

local function short(key) return key:sub(1, 8) .. "…" end

local function diff_wg(r, actual, out)
  local set = { op = "wg_set", ns = r.ns, name = r.name, peers = {} }
  local what = {}
  actual = actual or { peers = {} }
  if r.public_key ~= actual.public_key then
    set.private_key = r.private_key
    what[#what + 1] = "private key (public " .. short(r.public_key) .. ")"
  end
  if r.listen_port and r.listen_port ~= actual.listen_port then
    set.listen_port = r.listen_port
    what[#what + 1] = "listen port " .. r.listen_port
  end
  local have = {}
  for _, p in ipairs(actual.peers or {}) do have[p.public_key] = p end
  local wanted = {}
  for _, p in ipairs(r.peers or {}) do
    wanted[p.public_key] = true
    if peer_changes(p, have[p.public_key]) then
      set.peers[#set.peers + 1] = {
        public_key = p.public_key, endpoint = p.endpoint,
        persistent_keepalive = p.persistent_keepalive or 0,
        allowed_ips = p.allowed_ips, replace_allowed_ips = true,
      }
      what[#what + 1] = string.format("%s peer %s (%s)", have[p.public_key] and "update" or "add",
        short(p.public_key), table.concat(p.allowed_ips, " "))
    end
  end
  local gone = {}
  for key in pairs(have) do if not wanted[key] then gone[#gone + 1] = key end end
  table.sort(gone)
  for _, key in ipairs(gone) do
    set.peers[#set.peers + 1] = { public_key = key, remove = true }
    what[#what + 1] = "remove peer " .. short(key)
  end
  if #what == 0 then return end
  set.text = string.format("wireguard %s: %s", at(r.ns, r.name), table.concat(what, "; "))
  out[#out + 1] = set
end

-- The ruleset is re-applied (atomically, whole) when the kernel's table,
-- read back as a description, differs from the desired one in anything
-- but handles and counters: a chain, a rule, an expression, a verdict, the
-- order. Whether the policy changed or someone changed the table behind
-- our back, the plan says what differs first; the same table is left
-- alone, so its drop counters survive unrelated applies.
local function diff_nft(r, actual, out)
  local want = firewall.validate(r.ruleset) or r.ruleset
  local kernel = actual and actual.table
  local why = kernel and firewall.difference(kernel, want) or not kernel and "missing"
  if not why then return end
  out[#out + 1] = { op = "nft_apply", ns = r.ns, ruleset = want,
    text = string.format("firewall table %s %s in %s: %s", want.family, want.table, r.ns, why) }
end

-- Deletions for absent resources, in the reverse order of creation:
-- WireGuard (its daemon lives outside the namespace), links, namespaces,
-- then files.
local function diff_absent(desired, inv, out)
  local gone = {}
  for _, r in ipairs(desired) do
    if r.absent then
      if r.kind ~= "link" and r.kind ~= "netns" and r.kind ~= "file" and r.kind ~= "route" then
        error("an absent " .. r.kind .. " is not supported (" .. resources.key(r) .. ")", 0)
      end
      gone[#gone + 1] = r
    end
  end
  table.sort(gone, function(a, b)
    local function rank(r)
      if r.kind == "link" and r.type == "wireguard" then return 1 end
      return ({ route = 2, link = 2, netns = 3, file = 4 })[r.kind] or 5
    end
    local ra, rb = rank(a), rank(b)
    if ra ~= rb then return ra < rb end
    return resources.key(a) < resources.key(b)
  end)
  local deleted = {}
  local function delete_link(ns, name, why)
    if deleted[ns .. " " .. name] then return end
    deleted[ns .. " " .. name] = true
    out[#out + 1] = { op = "link_delete", ns = ns, name = name, missing_ok = true,
      text = string.format("delete %s%s", at(ns, name), why or "") }
  end
  for _, r in ipairs(gone) do
    if r.kind == "link" and r.type == "wireguard" then
      local st, birth = inv.ns[r.ns], r.birth_ns and inv.ns[r.birth_ns]
      local where = (st and st.links[r.name] and r.ns)
        or (birth and birth.links[r.name] and r.birth_ns)
        or ((inv.daemon[r.name] or inv.strays[r.name]) and (st and r.ns or r.birth_ns))
      if where then
        out[#out + 1] = { op = "wg_delete", ns = where, name = r.name, missing_ok = true,
          birth_ns = birth and r.birth_ns,
          text = string.format("delete wireguard %s%s", at(where, r.name),
            inv.daemon[r.name] and " and stop its daemon" or "") }
      end
      local sock = names.wg_socket(r.name)
      if not inv.daemon[r.name] and inv.files[sock] then
        out[#out + 1] = { op = "file_remove", path = sock, missing_ok = true,
          text = "remove stale socket " .. sock }
      end
    elseif r.kind == "route" then
      -- Only the route through R.via: another one to the same prefix is
      -- someone else's.
      local st = inv.ns[r.ns]
      for _, a in ipairs(st and st.routes or {}) do
        if a.family == r.family and a.dst == r.dst and a.via == r.via then
          out[#out + 1] = { op = "route_delete", ns = r.ns, family = a.family, dst = a.dst,
            via = a.via, dev = a.dev, text = route_text("remove ", r.ns, a.family, a.dst, a.via, a.dev) }
        end
      end
    elseif r.kind == "link" then
      local st = inv.ns[r.ns]
      if st and st.links[r.name] then delete_link(r.ns, r.name) end
    elseif r.kind == "netns" then
      local st = inv.ns[r.name]
      if st and r.veths_first then
        local veths = {}
        for name, l in pairs(st.links) do if l.kind == "veth" then veths[#veths + 1] = name end end
        table.sort(veths)
        for _, name in ipairs(veths) do delete_link(r.name, name, " (with its peer)") end
      end
      if inv.netns[r.name] or inv.stale[r.name] then
        out[#out + 1] = { op = "netns_delete", name = r.name, missing_ok = true,
          text = string.format("delete namespace %s%s", r.name,
            inv.stale[r.name] and " (a dead name: no namespace behind it)" or "") }
      end
    elseif r.kind == "file" then
      if inv.files[r.path] then
        out[#out + 1] = { op = "file_remove", path = r.path, missing_ok = true,
          text = "remove " .. r.path }
      end
    end
  end
end

-- The actions that take the system from INV to DESIRED.
function diff.compute(desired, inv, opts)
  opts = opts or {}
  -- An inventory may leave out what it found nothing of.
  inv = setmetatable({ stale = inv.stale or {}, daemon = inv.daemon or {},
    strays = inv.strays or {}, files = inv.files or {} }, { __index = inv })
  desired = resources.sort(desired)
  local out = {}
  for _, r in ipairs(desired) do
    if r.kind == "netns" and not r.absent and not inv.netns[r.name] then
      if inv.stale[r.name] then
        out[#out + 1] = { op = "netns_delete", name = r.name, missing_ok = true,
          text = "remove dead namespace name " .. r.name .. " (an interrupted change left it)" }
      end
      out[#out + 1] = { op = "netns_create", name = r.name, text = "create namespace " .. r.name }
    end
  end
  for _, r in ipairs(desired) do
    if r.kind == "sysctl" and inv.sysctl[resources.key(r)] ~= tostring(r.value) then
      out[#out + 1] = { op = "sysctl_set", ns = r.ns, key = r.key, value = tostring(r.value),
        text = string.format("sysctl %s=%s in %s", r.key, r.value, r.ns) }
    end
  end
  local remade = diff_links(desired, inv, out)
  for _, r in ipairs(desired) do
    if r.kind == "wg" then diff_wg(r, inv.wg[resources.key(r)], out) end
  end
  local readdressed = diff_addrs(desired, inv, remade, out)
  diff_routes(desired, inv, opts, remade, readdressed, out)
  for _, r in ipairs(desired) do
    if r.kind == "nft" then diff_nft(r, inv.nft[resources.key(r)], out) end
  end
  diff_absent(desired, inv, out)
  return out
end

return diff
