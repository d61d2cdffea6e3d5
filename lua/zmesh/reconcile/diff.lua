-- Diff: desired resources against the inventory, into an ordered list of
-- actions. Pure: no core calls. Each action is {op = …, text = "one line
-- for plan", …arguments}; reconcile.apply carries them out.
--
-- What is pruned: addresses (global scope) on every link the desired state
-- declares; static routes in the namespaces listed in opts.own_routes; wg
-- peers not desired. Links and namespaces the desired state does not
-- mention are left alone: other apply runs own them (an NR's containers).
local json = require "zmesh.json"
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

local function diff_links(desired, inv, out)
  for _, r in ipairs(desired) do
    if r.kind == "link" then
      local st = inv.ns[r.ns]
      local actual = st and st.links[r.name]
      local create
      if actual and not kind_matches(r, actual) then
        out[#out + 1] = { op = "link_delete", ns = r.ns, name = r.name,
          text = string.format("delete %s (a %s, not a %s)", at(r.ns, r.name),
            actual.kind or "device", r.type) }
        actual = nil
      end
      if actual and r.type == "wireguard" and inv.wg["wg " .. r.ns .. " " .. r.name] == false then
        -- The link is there but nothing answers for it (its daemon died):
        -- made again from scratch.
        create = link_create(r)
        create.replace_stale = true
        create.text = string.format("recreate wireguard %s (it does not answer)", at(r.ns, r.name))
        actual = nil
      elseif not actual and r.type ~= "existing" and r.type ~= "veth_end" then
        -- "existing" links come with the namespace (lo); a "veth_end" is
        -- made with its other end, which sorts before it.
        create = link_create(r)
      end
      out[#out + 1] = create
      out[#out + 1] = link_settings(r, actual or {}, actual == nil)
    end
  end
end

local function diff_addrs(desired, inv, out)
  local want, managed = {}, {}
  for _, r in ipairs(desired) do
    if r.kind == "link" then managed[r.ns .. " " .. r.name] = r end
    if r.kind == "addr" then
      want[r.ns .. " " .. r.dev .. " " .. r.addr] = true
      local st = inv.ns[r.ns]
      local have = false
      for _, a in ipairs(st and st.addrs[r.dev] or {}) do
        if a.addr == r.addr then have = true end
      end
      if not have then
        out[#out + 1] = { op = "addr_add", ns = r.ns, dev = r.dev, addr = r.addr,
          text = string.format("add address %s to %s", r.addr, at(r.ns, r.dev)) }
      end
    end
  end
  for _, r in pairs(managed) do
    local st = inv.ns[r.ns]
    for _, a in ipairs(st and st.addrs[r.name] or {}) do
      if a.scope == "global" and not want[r.ns .. " " .. r.name .. " " .. a.addr] then
        out[#out + 1] = { op = "addr_delete", ns = r.ns, dev = r.name, addr = a.addr,
          text = string.format("remove address %s from %s", a.addr, at(r.ns, r.name)) }
      end
    end
  end
end

local function route_family(dst, via)
  if dst == "default6" or (via and via:find(":", 1, true)) or dst:find(":", 1, true) then
    return 6
  end
  return 4
end

local function route_id(family, dst)
  if dst == "default6" then dst = "default" end
  return family .. " " .. dst
end

local function diff_routes(desired, inv, opts, out)
  local want = {}
  for _, r in ipairs(desired) do
    if r.kind == "route" then
      local family = route_family(r.dst, r.via)
      want[r.ns .. " " .. route_id(family, r.dst)] = true
      local st = inv.ns[r.ns]
      local ok = false
      for _, a in ipairs(st and st.routes or {}) do
        if a.family == family and route_id(family, a.dst) == route_id(family, r.dst)
           and a.via == r.via and (r.dev == nil or a.dev == r.dev) then
          ok = true
        end
      end
      if not ok then
        out[#out + 1] = { op = "route_replace", ns = r.ns, dst = r.dst, via = r.via, dev = r.dev,
          text = string.format("route %s%s%s in %s", r.dst, r.via and (" via " .. r.via) or "",
            r.dev and (" dev " .. r.dev) or "", r.ns) }
      end
    end
  end
  for _, ns in ipairs(opts.own_routes or {}) do
    local st = inv.ns[ns]
    for _, a in ipairs(st and st.routes or {}) do
      if a.protocol ~= "kernel" and not want[ns .. " " .. route_id(a.family, a.dst)] then
        out[#out + 1] = { op = "route_delete", ns = ns, dst = a.dst == "default" and a.family == 6
            and "default6" or a.dst, via = a.via, dev = a.dev,
          text = string.format("remove route %s%s in %s", a.dst,
            a.via and (" via " .. a.via) or "", ns) }
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

-- The shape of a table: chains with hook, policy and rule comments. It
-- tells a table that was changed or flushed behind our back.
local function shape_of_ruleset(rs)
  local parts = {}
  for _, c in ipairs(rs.chains or {}) do
    local comments = {}
    for i, rule in ipairs(c.rules or {}) do comments[i] = rule.comment or "" end
    parts[#parts + 1] = string.format("%s/%s/%s/%s", c.name, c.hook or "", c.policy or "",
      table.concat(comments, ","))
  end
  return table.concat(parts, ";")
end

-- The ruleset is re-applied (atomically, whole) when the kernel's table
-- no longer has the shape of the desired one, or when the ruleset last
-- applied, kept in r.record, differs from the desired one (a policy change).
local function diff_nft(r, actual, out)
  local want = json.encode(r.ruleset)
  actual = actual or {}
  local why
  if not actual.table then
    why = "missing"
  elseif shape_of_ruleset(actual.table) ~= shape_of_ruleset(r.ruleset) then
    why = "changed outside Zero-Mesh"
  elseif actual.recorded ~= want then
    why = "policy changed"
  end
  if not why then return end
  out[#out + 1] = { op = "nft_apply", ns = r.ns, ruleset = r.ruleset, record = r.record,
    record_text = want,
    text = string.format("firewall table %s %s in %s (%s)", r.ruleset.family or "inet",
      r.ruleset.table or "zmesh", r.ns, why) }
end

-- The actions that take the system from INV to DESIRED.
function diff.compute(desired, inv, opts)
  opts = opts or {}
  desired = resources.sort(desired)
  local out = {}
  for _, r in ipairs(desired) do
    if r.kind == "netns" and not inv.netns[r.name] then
      out[#out + 1] = { op = "netns_create", name = r.name, text = "create namespace " .. r.name }
    end
  end
  for _, r in ipairs(desired) do
    if r.kind == "sysctl" and inv.sysctl[resources.key(r)] ~= tostring(r.value) then
      out[#out + 1] = { op = "sysctl_set", ns = r.ns, key = r.key, value = tostring(r.value),
        text = string.format("sysctl %s=%s in %s", r.key, r.value, r.ns) }
    end
  end
  diff_links(desired, inv, out)
  for _, r in ipairs(desired) do
    if r.kind == "wg" then diff_wg(r, inv.wg[resources.key(r)], out) end
  end
  diff_addrs(desired, inv, out)
  diff_routes(desired, inv, opts, out)
  for _, r in ipairs(desired) do
    if r.kind == "nft" then diff_nft(r, inv.nft[resources.key(r)], out) end
  end
  return out
end

return diff
