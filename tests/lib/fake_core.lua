-- An in-memory stand-in for zmesh.core, for unit tests without root: a
-- small model of namespaces, links, addresses, routes, sysctls, WireGuard
-- devices, keys and files. It answers like the real bindings (true, or
-- nil, "ENAME: message", "ENAME") and records every changing call in
-- fake.calls, so tests can assert what an apply did.
--
-- It cannot drift from the bindings unnoticed:
--   * every option table is checked against the real module's
--     core.contract (the very field lists the bindings check), and an
--     unknown field raises as the bindings raise:
--     "bad argument #1 to 'veth' (unknown field 'x')";
--   * the kernel's side effects are modelled where the real core shows
--     them: a link that comes up with a carrier gets its IPv6 link-local
--     address (fe80::/64, scope "link"), an address gives its connected
--     route (protocol "kernel"), a link going down takes its routes and
--     IPv6 addresses, a deleted link takes its veth peer, a bridge follows
--     the smallest MTU of its ports;
--   * WireGuard merges like WireGuard: a peer given again is updated, not
--     replaced (AllowedIPs add up unless replace_allowed_ips; an endpoint
--     or keepalive not given stays); an AllowedIP belongs to one peer;
--     wg.create's birth_ns keeps the daemon and its UDP socket (a listen
--     port is taken per birth namespace), the interface lives in ns;
--   * tests/integration/fake_vs_real_spec.lua runs one call sequence on
--     this fake and on the real core and compares what they read back.
--
-- Where it is simpler than the kernel, on purpose: addresses are never
-- tentative (DAD is over), link-local addresses are made from the MAC
-- (EUI-64; a TUN's from its name), there is no kernel WireGuard
-- (wg.kernel_available() is false: every device is wireguard-go's), and
-- fake.add_stray(name, birth_ns) stands for a daemon a killed create left
-- starting.
local ip = require "zmesh.ip"

local fake_core = {}

------------------------------------------------------------------------
-- The real module, read only: its contract and its nftables vocabulary.

-- Kept in the registry: busted insulates package.loaded per file, and a
-- test may have put a fake in package.loaded["zmesh.core"] already.
local REAL_KEY = "fake_core: the real zmesh.core"

local function is_real(m)
  return type(m) == "table" and m.version ~= "fake" and type(m.contract) == "table"
    and type(m.nft) == "table" and type(m.nft.check) == "function"
end

local function load_real()
  local reg = debug.getregistry()
  if is_real(reg[REAL_KEY]) then return reg[REAL_KEY] end
  local m, where = package.loaded["zmesh.core"], "package.loaded"
  if not is_real(m) then
    local path, why = package.searchpath("zmesh.core", package.cpath)
    if not path then
      error("fake_core: the real zmesh.core is needed for core.contract, and it is not on "
        .. "package.cpath (build it, and run busted with --cpath=build/lua/?.so):\n\t" .. why, 0)
    end
    local open, lerr = package.loadlib(path, "luaopen_zmesh_core")
    if not open then error("fake_core: cannot load the real zmesh.core from " .. path .. ": " .. lerr, 0) end
    m, where = open("zmesh.core", path), path
  end
  if not is_real(m) then
    error("fake_core: the zmesh.core from " .. where .. " has no core.contract (an old build?)", 0)
  end
  reg[REAL_KEY] = m
  return m
end

local real = load_real()
fake_core.real = real

-- The option tables this fake checks; each must be in core.contract.
local CHECKED = {
  "link.veth", "link.bridge", "link.macvlan", "link.set", "link.delete",
  "addr.add", "addr.delete", "route.add", "route.delete", "route.dump",
  "wg.create", "wg.set", "wg.set peers[]", "wg.get", "wg.delete", "wg.strays",
  "nft.dump", "nft.delete",
}
local FIELDS = {}
for _, name in ipairs(CHECKED) do
  local list = real.contract[name]
  if type(list) ~= "table" or #list == 0 then
    error("fake_core: core.contract has no field list for '" .. name
      .. "': the bindings and this fake disagree on what exists", 0)
  end
  FIELDS[name] = {}
  for _, f in ipairs(list) do FIELDS[name][f] = true end
end
fake_core.contract = real.contract

------------------------------------------------------------------------
-- Argument checks, raising as the bindings do (luaL_argerror): the
-- function named as the caller called it ('?' from C, e.g. pcall), the
-- position the caller's. A C function is never tail-called and a Lua one
-- is: after `return core.link.veth{…}` the fake still names 'veth', but
-- it can only point at the caller's caller.

local callee = "?"
local BODIES = setmetatable({}, { __mode = "k" })

-- FN as an API function called NAME (for a tail call).
local function api(fn, name)
  local function wrapper(...)
    local info = debug.getinfo(1, "nt")
    callee = info.name or (info.istailcall and name) or "?"
    return fn(...)
  end
  -- The wrapper tail-calls FN: FN's frame is where the wrapper's was.
  BODIES[fn] = true
  return wrapper
end

local function argerror(arg, msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "f")
    if not info then level = -1 break end
    if BODIES[info.func] then break end
    level = level + 1
  end
  -- The API function's caller, as luaL_where(L, 1) in the binding.
  error(string.format("bad argument #%d to '%s' (%s)", arg, callee, msg), level > 0 and level + 1 or 0)
end
local function field_error(arg, key, why) argerror(arg, string.format("field '%s': %s", key, why)) end

local function check_fields(arg, o, cname)
  if type(o) ~= "table" then argerror(arg, "table expected, got " .. type(o)) end
  local allowed = FIELDS[cname]
  for k in pairs(o) do
    if type(k) ~= "string" then argerror(arg, "option keys must be strings") end
    if not allowed[k] then argerror(arg, "unknown field '" .. k .. "'") end
  end
end

local function opt_string(arg, o, key, required)
  local v = o[key]
  if v == nil then
    if required then field_error(arg, key, "required string missing") end
    return nil
  end
  if type(v) ~= "string" then field_error(arg, key, "string expected, got " .. type(v)) end
  return v
end

local function opt_int(arg, o, key, dflt, min, max)
  local v = o[key]
  if v == nil then return dflt end
  if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) end
  if math.type(v) ~= "integer" then field_error(arg, key, "integer expected") end
  if v < min or v > max then field_error(arg, key, string.format("%d out of range %d..%d", v, min, max)) end
  return v
end

local function opt_bool(arg, o, key, dflt)
  local v = o[key]
  if v == nil then return dflt end
  if type(v) ~= "boolean" then field_error(arg, key, "boolean expected") end
  return v
end

local function ifname_valid(name)
  if type(name) ~= "string" or #name == 0 or #name >= 16 or name == "." or name == ".." then return false end
  -- As core/link.c: no '/', ':', space, control or (signed char) high bytes.
  return not name:find("[%c /:\128-\255]")
end

local function nsname_valid(name)
  return type(name) == "string" and #name > 0 and #name <= 64 and name ~= "." and name ~= ".."
    and not name:find("[^%w_%-%.]")
end

local function opt_ifname(arg, o, key, required)
  local v = opt_string(arg, o, key, required)
  if v and not ifname_valid(v) then field_error(arg, key, "invalid interface name '" .. v .. "'") end
  return v
end

local handle_mt = {}

local function check_ns_field(arg, o, key)
  local v = o[key]
  if v == nil then return end
  if type(v) == "string" then
    if not nsname_valid(v) then field_error(arg, key, "invalid namespace name '" .. v .. "'") end
  elseif getmetatable(v) ~= handle_mt then
    field_error(arg, key, "namespace name or handle expected")
  elseif not v.st then
    field_error(arg, key, "namespace handle is closed")
  end
end

-- A namespace as a positional argument (nil: the caller's own).
local function check_ns_arg(arg, v)
  if v == nil then return end
  if type(v) == "string" then
    if not nsname_valid(v) then argerror(arg, "ns: invalid namespace name '" .. v .. "'") end
  elseif getmetatable(v) ~= handle_mt then
    argerror(arg, "ns: namespace name or handle expected")
  elseif not v.st then
    argerror(arg, "ns: namespace handle is closed")
  end
end

local function check_ifname_arg(arg, v)
  if type(v) ~= "string" then argerror(arg, "string expected, got " .. type(v)) end
  if not ifname_valid(v) then argerror(arg, "invalid interface name '" .. v .. "'") end
  return v
end

-- A private key: the fake's own, fake_keys', or a real core.key.
local function is_key(v)
  if type(v) ~= "table" and type(v) ~= "userdata" then return false end
  local ok, f = pcall(function() return v.public end)
  return ok and type(f) == "function"
end

-- "192.0.2.1:51820" or "[2001:db8::1]:51820", as the core formats it.
local function parse_endpoint(s)
  local family, host, port = 6, s:match("^%[([^%]]+)%]:(%d+)$")
  if not host then family, host, port = 4, s:match("^([%d%.]+):(%d+)$") end
  if not host then return nil end
  local a = ip.parse_addr(host)
  port = tonumber(port)
  if not a or a.family ~= family or not port or port < 1 or port > 65535 then return nil end
  local text = ip.format_addr(a)
  return family == 6 and ("[" .. text .. "]:" .. port) or (text .. ":" .. port)
end

------------------------------------------------------------------------
-- Addresses and prefixes.

local function parse(s) return ip.parse_cidr(s, { host_ok = true }) end
local function bits(p) return p.family == 4 and 32 or 128 end
local function net_of(p) return ip.network(p) end
local function cidr(p) return ip.format_cidr(p) end
local function addr_text(p) return ip.format_addr(p) end
local function same_ip(a, b)
  if a.family ~= b.family then return false end
  for i = 1, #a.bytes do if a.bytes[i] ~= b.bytes[i] then return false end end
  return true
end
local function is_ll(p) return p.family == 6 and p.bytes[1] == 0xfe and (p.bytes[2] & 0xc0) == 0x80 end
-- How route.dump names a prefix: "default" for /0.
local function dst_text(p) return p.len == 0 and "default" or cidr(net_of(p)) end

local function err(name, msg) return nil, name .. ": " .. msg, name end

------------------------------------------------------------------------

function fake_core.new()
  local S = { netns = {}, stale = {}, host = nil, files = {}, calls = {}, next_index = 10,
    fail = {}, locks = {}, daemons = {}, strays = {}, next_pid = 4242, next_port = 40000 }

  local function new_link(t)
    S.next_index = S.next_index + 1
    t.index = t.index or S.next_index
    t.up = t.up or false
    return t
  end

  local function new_ns(name)
    local st = { name = name, links = {}, addrs = {}, routes = {}, sysctl = {} }
    st.links.lo = { name = "lo", index = 1, up = false, mtu = 65536, loopback = true, st = st,
      mac = "00:00:00:00:00:00" }
    return st
  end
  S.host = new_ns(nil)
  S.host.links.eth0 = { name = "eth0", index = 2, up = true, mtu = 1500, st = S.host,
    mac = "02:00:00:00:00:02" }

  local function label(st) return st.name or "(own)" end
  local function all_ns()
    local list = { S.host }
    local names = {}
    for name in pairs(S.netns) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do list[#list + 1] = S.netns[name] end
    return list
  end

  local function resolve(ns)
    if ns == nil then return S.host end
    if type(ns) == "table" then return ns.st end
    return S.netns[ns]
  end
  local function need(ns)
    local st = resolve(ns)
    if not st then
      return nil, err("ENOENT", "namespace '" .. tostring(ns) .. "' does not exist: No such file or directory")
    end
    return st
  end
  local function record(op, detail)
    S.calls[#S.calls + 1] = op .. (detail and (" " .. detail) or "")
    if S.fail[op] then return err(S.fail[op], "injected failure in " .. op) end
    return true
  end
  local function no_link(st, name)
    return err("ENODEV", "link '" .. name .. "' in namespace " .. label(st) .. ": No such device")
  end

  --------------------------------------------------------------------
  -- Sysctls: stored under the slash form of the key, as /proc/sys has it.

  local function skey(key)
    if key:find("/", 1, true) then return key end
    return (key:gsub("%.", "/"))
  end
  local function sysctl_default(k)
    local conf, knob = k:match("^net/ipv6/conf/([^/]+)/([^/]+)$")
    if conf then
      if knob == "accept_ra" or knob == "autoconf" then return "1" end
      if knob == "accept_dad" then return conf == "all" and "0" or "1" end
    end
    return "0"
  end
  local function sysctl_value(st, k) return st.sysctl[k] or sysctl_default(k) end
  -- The device a per-device key names, or nil.
  local function sysctl_dev(k)
    local dev = k:match("^net/ipv[46]/conf/([^/]+)/") or k:match("^net/ipv[46]/neigh/([^/]+)/")
    if dev == "all" or dev == "default" then return nil end
    return dev
  end
  local function drop_dev_sysctls(st, dev)
    for k in pairs(st.sysctl) do
      if sysctl_dev(k) == dev then st.sysctl[k] = nil end
    end
  end
  -- A new device takes the "default" values of its namespace.
  local function inherit_sysctls(st, dev)
    for k, v in pairs(st.sysctl) do
      local fam, knob = k:match("^net/(ipv[46])/conf/default/([^/]+)$")
      if fam then st.sysctl["net/" .. fam .. "/conf/" .. dev .. "/" .. knob] = v end
    end
  end
  local function ipv6_on(st, dev)
    return sysctl_value(st, "net/ipv6/conf/" .. dev .. "/disable_ipv6") ~= "1"
  end

  --------------------------------------------------------------------
  -- The kernel's side effects.

  local function link_of(st, dev) return st.links[dev] end
  local function ports_of(st, bridge)
    local out = {}
    for _, l in pairs(st.links) do if l.master == bridge.name then out[#out + 1] = l end end
    return out
  end
  local function carrier(l)
    if not l.up then return false end
    if l.kind == "veth" then return l.peer ~= nil and l.peer.up end
    if l.kind == "macvlan" then return l.parent ~= nil and carrier(l.parent) end
    if l.kind == "bridge" then
      local ports = ports_of(l.st, l)
      if #ports == 0 then return true end
      for _, p in ipairs(ports) do if carrier(p) then return true end end
      return false
    end
    return true
  end
  local function operstate(l)
    if not l.up then return "down" end
    if l.loopback or l.kind == "tun" then return "unknown" end
    if l.kind == "bridge" and #ports_of(l.st, l) == 0 then return "unknown" end
    return carrier(l) and "up" or "down"
  end

  local function add_route(st, r)
    for _, q in ipairs(st.routes) do
      if q.family == r.family and q.dst == r.dst and q.dev == r.dev and q.metric == r.metric
        and q.table == r.table and q.protocol == r.protocol then return end
    end
    st.routes[#st.routes + 1] = r
  end
  local function remove_routes(st, pred)
    for i = #st.routes, 1, -1 do if pred(st.routes[i]) then table.remove(st.routes, i) end end
  end
  -- The connected route of address A on link L: none for a host address,
  -- an IPv4 secondary, or IPv4 on a loopback (its routes are in table local).
  local function connected(a, l)
    if a.p.len >= bits(a.p) or a.secondary or (a.family == 4 and l.loopback) then return nil end
    if a.family == 4 then
      return { family = 4, dst = dst_text(a.p), p = net_of(a.p), dev = a.dev, protocol = "kernel",
        scope = "link", metric = 0, table = 254 }
    end
    return { family = 6, dst = dst_text(a.p), p = net_of(a.p), dev = a.dev, protocol = "kernel",
      scope = "global", metric = 256, table = 254 }
  end
  local function add_address(st, l, a)
    a.dev = l.name
    st.addrs[#st.addrs + 1] = a
    local r = l.up and connected(a, l)
    if r then add_route(st, r) end
  end
  local function remove_addrs(st, pred)
    for i = #st.addrs, 1, -1 do if pred(st.addrs[i]) then table.remove(st.addrs, i) end end
  end

  -- fe80::/64 from the MAC (EUI-64), or from the name for a TUN (the
  -- kernel picks one at random there: tests compare the prefix only).
  local function link_local(l)
    local b = { 0xfe, 0x80, 0, 0, 0, 0, 0, 0 }
    if l.mac then
      local m = {}
      for x in l.mac:gmatch("%x%x") do m[#m + 1] = tonumber(x, 16) end
      for _, v in ipairs({ m[1] ~ 2, m[2], m[3], 0xff, 0xfe, m[4], m[5], m[6] }) do b[#b + 1] = v end
    else
      local h = 5381
      for i = 1, #l.name do h = (h * 33 + l.name:byte(i)) & 0xffffffff end
      for i = 0, 7 do b[#b + 1] = ((h >> ((i % 4) * 8)) ~ (i * 37)) & 0xff end
    end
    return { family = 6, bytes = b, len = 64 }
  end

  local function has_addr(st, dev, pred)
    for _, a in ipairs(st.addrs) do if a.dev == dev and pred(a) then return true end end
    return false
  end

  -- Bring every namespace to what the kernel would show now.
  local function settle()
    for _, st in ipairs(all_ns()) do
      for _, l in pairs(st.links) do
        if l.kind == "bridge" and not l.mtu_user then
          local mtu
          for _, p in ipairs(ports_of(st, l)) do mtu = math.min(mtu or p.mtu, p.mtu) end
          l.mtu = mtu or 1500
        end
      end
      for _, l in pairs(st.links) do
        local v6 = ipv6_on(st, l.name)
        if not v6 then
          remove_addrs(st, function(a) return a.dev == l.name and a.family == 6 end)
          remove_routes(st, function(r) return r.dev == l.name and r.family == 6 end)
        end
        if l.up and l.loopback then
          if not has_addr(st, l.name, function(a) return a.addr == "127.0.0.1/8" end) then
            add_address(st, l, { family = 4, addr = "127.0.0.1/8", p = parse("127.0.0.1/8"), scope = "host" })
          end
          if v6 and not has_addr(st, l.name, function(a) return a.addr == "::1/128" end) then
            add_address(st, l, { family = 6, addr = "::1/128", p = parse("::1/128"), scope = "host" })
          end
        elseif l.up and v6 and carrier(l) and not has_addr(st, l.name, function(a) return a.scope == "link" end) then
          local p = link_local(l)
          add_address(st, l, { family = 6, addr = cidr(p), p = p, scope = "link" })
        end
      end
    end
  end

  local function set_up(l)
    if l.up then return end
    l.up = true
    for _, a in ipairs(l.st.addrs) do
      local r = a.dev == l.name and connected(a, l)
      if r then add_route(l.st, r) end
    end
  end
  -- Down: the routes through it go, and its IPv6 addresses.
  local function set_down(l)
    if not l.up then return end
    l.up = false
    remove_routes(l.st, function(r) return r.dev == l.name end)
    remove_addrs(l.st, function(a) return a.dev == l.name and a.family == 6 end)
  end

  local end_daemon
  -- A link goes with its addresses, routes, sysctls, veth peer, macvlans
  -- on it and the WireGuard daemon serving it.
  local function drop_link(l)
    local st = l.st
    if not st or st.links[l.name] ~= l then return end
    st.links[l.name] = nil
    l.st = nil
    remove_addrs(st, function(a) return a.dev == l.name end)
    remove_routes(st, function(r) return r.dev == l.name end)
    drop_dev_sysctls(st, l.name)
    for _, p in pairs(st.links) do if p.master == l.name then p.master = nil end end
    if l.peer then
      local peer = l.peer
      l.peer, peer.peer = nil, nil
      drop_link(peer)
    end
    for _, ns in ipairs(all_ns()) do
      for _, m in pairs(ns.links) do if m.parent == l then drop_link(m) end end
    end
    if l.daemon then end_daemon(l.daemon) end
  end

  local function place(st, l)
    l.st = st
    st.links[l.name] = l
    inherit_sysctls(st, l.name)
  end

  -- Into namespace TARGET (as NAME): down, no addresses, out of its bridge.
  local function move_link(l, target, name)
    local st = l.st
    set_down(l)
    remove_addrs(st, function(a) return a.dev == l.name end)
    drop_dev_sysctls(st, l.name)
    for _, p in pairs(st.links) do if p.master == l.name then p.master = nil end end
    st.links[l.name] = nil
    l.master = nil
    l.name = name or l.name
    place(target, l)
  end

  --------------------------------------------------------------------
  local core = { version = "fake", contract = real.contract }

  local function check_netns_name(arg, name)
    if type(name) ~= "string" then argerror(arg, "string expected, got " .. type(name)) end
    if not nsname_valid(name) then argerror(arg, "invalid namespace name '" .. name .. "'") end
    return name
  end

  core.netns = {
    create = api(function(name)
      check_netns_name(1, name)
      if S.netns[name] or S.stale[name] then
        return err("EEXIST", "namespace '" .. name .. "' already exists: File exists")
      end
      local ok, e, n = record("netns.create", name)
      if not ok then return ok, e, n end
      S.netns[name] = new_ns(name)
      return true
    end, "create"),
    delete = api(function(name, grace)
      check_netns_name(1, name)
      if grace ~= nil and (math.type(grace) ~= "integer" or grace < 0 or grace > 60000) then
        argerror(2, "grace must be 0..60000 ms")
      end
      local st = S.netns[name]
      if not st and S.stale[name] then
        S.stale[name] = nil
        return record("netns.delete", name)
      end
      if not st then return err("ENOENT", "namespace '" .. name .. "' does not exist: No such file or directory") end
      local ok, e, n = record("netns.delete", name)
      if not ok then return ok, e, n end
      -- Its processes end: the daemons born here (their interfaces go
      -- wherever they are) and those whose interface dies with it.
      for _, d in pairs(S.daemons) do
        if d.birth == st or (d.link and d.link.st == st) then end_daemon(d) end
      end
      for i = #S.strays, 1, -1 do if S.strays[i].birth == st then table.remove(S.strays, i) end end
      -- Virtual links die (a veth takes its peer), physical ones go home.
      local links = {}
      for _, l in pairs(st.links) do links[#links + 1] = l end
      table.sort(links, function(a, b) return a.index < b.index end)
      for _, l in ipairs(links) do
        if l.st == st then
          if l.kind == nil and not l.loopback then
            move_link(l, S.host, S.host.links[l.name] and ("dev" .. l.index) or l.name)
          else
            drop_link(l)
          end
        end
      end
      S.netns[name] = nil
      settle()
      return true
    end, "delete"),
    exists = api(function(name)
      check_netns_name(1, name)
      return S.netns[name] ~= nil
    end, "exists"),
    -- Live names, and the dead ones (S.stale) a killed change leaves.
    list = api(function()
      local out = {}
      for name in pairs(S.netns) do out[#out + 1] = name end
      for name in pairs(S.stale) do out[#out + 1] = name end
      table.sort(out)
      return out
    end, "list"),
    pids = api(function(name)
      check_netns_name(1, name)
      local st, e, n = need(name)
      if not st then return st, e, n end
      local out = {}
      for _, d in pairs(S.daemons) do if d.birth == st then out[#out + 1] = d.pid end end
      for _, s in ipairs(S.strays) do if s.birth == st then out[#out + 1] = s.pid end end
      table.sort(out)
      return out
    end, "pids"),
    open = api(function(name)
      if name ~= nil then check_netns_name(1, name) end
      local st, e, n = need(name)
      if not st then return st, e, n end
      return setmetatable({ st = st }, handle_mt)
    end, "open"),
  }
  handle_mt.__index = {
    close = function(h) h.st = nil end,
    name = function(h)
      assert(h.st, "bad argument #1 to 'name' (namespace handle is closed)")
      return h.st.name
    end,
  }
  handle_mt.__close = function(h) h.st = nil end
  handle_mt.__tostring = function(h)
    return h.st and ("zmesh.netns (" .. label(h.st) .. ")") or "zmesh.netns (closed)"
  end

  local function mac_of(index)
    return string.format("02:00:00:%02x:%02x:%02x", (index >> 16) & 255, (index >> 8) & 255, index & 255)
  end
  local function link_exists(st, name)
    return err("EEXIST", "link '" .. name .. "' in namespace " .. label(st) .. ": File exists")
  end
  local function add_link(st, l)
    if st.links[l.name] then return link_exists(st, l.name) end
    new_link(l)
    l.mtu = l.mtu or 1500
    if l.kind ~= "tun" then l.mac = l.mac or mac_of(l.index) end
    place(st, l)
    return true
  end

  local function link_info(l)
    local i = { name = l.name, index = l.index, kind = l.kind, mtu = l.mtu, up = l.up,
      carrier = carrier(l), operstate = operstate(l), mac = l.mac }
    local m = l.master and l.st.links[l.master]
    if m then i.master, i.master_index = m.name, m.index end
    -- A veth's IFLA_LINK: its peer's ifindex, in the peer's namespace.
    if l.peer then i.link_index = l.peer.index end
    return i
  end

  core.link = {
    veth = api(function(o)
      check_fields(1, o, "link.veth")
      opt_ifname(1, o, "name", true)
      opt_ifname(1, o, "peer", true)
      local mtu = opt_int(1, o, "mtu", 0, 68, 65535)
      check_ns_field(1, o, "peer_ns")
      check_ns_field(1, o, "ns")
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local pst = st
      if o.peer_ns ~= nil then
        pst, e, n = need(o.peer_ns)
        if not pst then return pst, e, n end
      end
      local ok
      ok, e, n = record("link.veth", o.name)
      if not ok then return ok, e, n end
      if st.links[o.name] then return link_exists(st, o.name) end
      if pst.links[o.peer] or (pst == st and o.peer == o.name) then return link_exists(pst, o.peer) end
      local a = { name = o.name, kind = "veth", mtu = mtu > 0 and mtu or nil }
      local b = { name = o.peer, kind = "veth", mtu = mtu > 0 and mtu or nil }
      a.peer, b.peer = b, a
      add_link(st, a)
      add_link(pst, b)
      settle()
      return true
    end, "veth"),
    bridge = api(function(o)
      check_fields(1, o, "link.bridge")
      opt_ifname(1, o, "name", true)
      local mtu = opt_int(1, o, "mtu", 0, 68, 65535)
      check_ns_field(1, o, "ns")
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local ok
      ok, e, n = record("link.bridge", o.name)
      if not ok then return ok, e, n end
      ok, e, n = add_link(st, { name = o.name, kind = "bridge", mtu = mtu > 0 and mtu or nil,
        mtu_user = mtu > 0 or nil })
      if not ok then return ok, e, n end
      settle()
      return true
    end, "bridge"),
    -- Made on PARENT in parent_ns, born into ns.
    macvlan = api(function(o)
      check_fields(1, o, "link.macvlan")
      opt_ifname(1, o, "name", true)
      opt_ifname(1, o, "parent", true)
      local mode = opt_string(1, o, "mode", false)
      local modes = { private = true, vepa = true, bridge = true, passthru = true, source = true }
      if mode and not modes[mode] then field_error(1, "mode", "unknown macvlan mode '" .. mode .. "'") end
      local mtu = opt_int(1, o, "mtu", 0, 68, 65535)
      check_ns_field(1, o, "parent_ns")
      check_ns_field(1, o, "ns")
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local pst
      pst, e, n = need(o.parent_ns)
      if not pst then return pst, e, n end
      local parent = pst.links[o.parent]
      if not parent then return no_link(pst, o.parent) end
      local ok
      ok, e, n = record("link.macvlan", o.name)
      if not ok then return ok, e, n end
      ok, e, n = add_link(st, { name = o.name, kind = "macvlan", parent = parent,
        mtu = mtu > 0 and mtu or parent.mtu })
      if not ok then return ok, e, n end
      settle()
      return true
    end, "macvlan"),
    -- set{ns, name, up, mtu, master (name or false), netns, rename}: in
    -- the kernel's order: namespace and name, MTU, master, then up.
    set = api(function(o)
      check_fields(1, o, "link.set")
      opt_ifname(1, o, "name", true)
      local up = opt_bool(1, o, "up", nil)
      local mtu = opt_int(1, o, "mtu", nil, 68, 65535)
      if type(o.master) == "boolean" then
        if o.master then field_error(1, "master", "link name or false expected") end
      elseif o.master ~= nil then
        opt_ifname(1, o, "master", false)
      end
      opt_ifname(1, o, "rename", false)
      check_ns_field(1, o, "netns")
      check_ns_field(1, o, "ns")
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local target
      if o.netns ~= nil then
        target, e, n = need(o.netns)
        if not target then return target, e, n end
      end
      local l = st.links[o.name]
      if not l then return no_link(st, o.name) end
      local ok
      ok, e, n = record("link.set", o.name)
      if not ok then return ok, e, n end
      local dest = target or st
      local new_name = o.rename or l.name
      if (dest ~= st or new_name ~= l.name) and dest.links[new_name] then
        return link_exists(dest, new_name)
      end
      if target and target ~= st then
        if l.loopback or l.kind == "bridge" then
          return err("EINVAL", "link '" .. o.name .. "' in namespace " .. label(st)
            .. ": The link has netns-local property: Invalid argument")
        end
        move_link(l, target, new_name)
      elseif new_name ~= l.name then
        local old = l.name
        st.links[old] = nil
        l.name = new_name
        st.links[new_name] = l
        for _, a in ipairs(st.addrs) do if a.dev == old then a.dev = new_name end end
        for _, r in ipairs(st.routes) do if r.dev == old then r.dev = new_name end end
        for _, p in pairs(st.links) do if p.master == old then p.master = new_name end end
        for k, v in pairs(st.sysctl) do
          if sysctl_dev(k) == old then
            local head, tail = k:match("^(net/ipv[46]/%a+/)[^/]+(/.+)$")
            st.sysctl[k], st.sysctl[head .. new_name .. tail] = nil, v
          end
        end
      end
      local here = l.st
      if mtu then
        l.mtu = mtu
        if l.kind == "bridge" then l.mtu_user = true end
      end
      if o.master == false then
        l.master = nil
      elseif o.master then
        local m = here.links[o.master]
        if not m then return no_link(here, o.master) end
        if m.kind ~= "bridge" or m == l then
          return err("EOPNOTSUPP", "link '" .. l.name .. "' in namespace " .. label(here)
            .. ": Operation not supported")
        end
        l.master = m.name
      end
      if up == true then set_up(l) elseif up == false then set_down(l) end
      settle()
      return true
    end, "set"),
    delete = api(function(o)
      check_fields(1, o, "link.delete")
      opt_ifname(1, o, "name", true)
      check_ns_field(1, o, "ns")
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local l = st.links[o.name]
      if not l then return no_link(st, o.name) end
      local ok
      ok, e, n = record("link.delete", o.name)
      if not ok then return ok, e, n end
      if l.loopback then
        return err("EOPNOTSUPP", "link 'lo' in namespace " .. label(st) .. ": Operation not supported")
      end
      drop_link(l)
      settle()
      return true
    end, "delete"),
    get = api(function(ns, name)
      check_ifname_arg(2, name)
      check_ns_arg(1, ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local l = st.links[name]
      if not l then return no_link(st, name) end
      return link_info(l)
    end, "get"),
    dump = api(function(ns)
      check_ns_arg(1, ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local out = {}
      for _, l in pairs(st.links) do out[#out + 1] = link_info(l) end
      table.sort(out, function(a, b) return a.index < b.index end)
      return out
    end, "dump"),
  }

  --------------------------------------------------------------------
  local function check_addr_args(o)
    local dev = opt_string(1, o, "dev", true)
    if not ifname_valid(dev) then field_error(1, "dev", "invalid interface name '" .. dev .. "'") end
    local text = opt_string(1, o, "addr", true)
    local p = parse(text)
    if not p then field_error(1, "addr", "'" .. text .. "' is not an address/prefix") end
    check_ns_field(1, o, "ns")
    return dev, p
  end
  local function addr_where(p, dev, st)
    return "address " .. cidr(p) .. " on '" .. dev .. "' in namespace " .. label(st)
  end
  -- The same address: IPv4 by address and prefix length, IPv6 by address.
  local function same_addr(a, p)
    return same_ip(a.p, p) and (p.family == 6 or a.p.len == p.len)
  end

  core.addr = {
    add = api(function(o)
      check_fields(1, o, "addr.add")
      local dev, p = check_addr_args(o)
      local replace = opt_bool(1, o, "replace", false)
      opt_bool(1, o, "nodad", false)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local l = st.links[dev]
      if not l then
        local _, why = no_link(st, dev)
        return err("ENODEV", addr_where(p, dev, st) .. ": " .. why:gsub("^ENODEV: ", ""))
      end
      for _, a in ipairs(st.addrs) do
        if a.dev == dev and same_addr(a, p) then
          if replace then return record("addr.add", o.addr) end
          return err("EEXIST", addr_where(p, dev, st) .. (p.family == 4
            and ": Address already assigned: File exists" or ": ipv6: address already assigned: File exists"))
        end
      end
      if p.family == 6 and not ipv6_on(st, dev) then
        return err("EACCES", addr_where(p, dev, st) .. ": IPv6 is disabled on this device: Permission denied")
      end
      local ok
      ok, e, n = record("addr.add", o.addr)
      if not ok then return ok, e, n end
      local scope = "global"
      if (p.family == 4 and p.bytes[1] == 127) or same_ip(p, parse("::1")) then scope = "host"
      elseif is_ll(p) then scope = "link" end
      local a = { family = p.family, addr = cidr(p), p = p, scope = scope }
      -- A second IPv4 address in a subnet is a secondary: no second route.
      if p.family == 4 then
        for _, b in ipairs(st.addrs) do
          if b.dev == dev and b.family == 4 and b.p.len == p.len and ip.contains(net_of(b.p), p) then
            a.secondary = true
          end
        end
      end
      add_address(st, l, a)
      settle()
      return true
    end, "add"),
    delete = api(function(o)
      check_fields(1, o, "addr.delete")
      local dev, p = check_addr_args(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      if not st.links[dev] then
        local _, why = no_link(st, dev)
        return err("ENODEV", addr_where(p, dev, st) .. ": " .. why:gsub("^ENODEV: ", ""))
      end
      for i, a in ipairs(st.addrs) do
        if a.dev == dev and same_ip(a.p, p) and a.p.len == p.len then
          local ok
          ok, e, n = record("addr.delete", o.addr)
          if not ok then return ok, e, n end
          table.remove(st.addrs, i)
          if a.family == 4 then
            local subnet = net_of(a.p)
            local function in_subnet(b)
              return b.dev == dev and b.family == 4 and b.p.len == a.p.len and ip.contains(subnet, b.p)
            end
            if not a.secondary then
              -- A primary takes its secondaries along, unless promoted.
              local promote = sysctl_value(st, "net/ipv4/conf/all/promote_secondaries") == "1"
                or sysctl_value(st, "net/ipv4/conf/" .. dev .. "/promote_secondaries") == "1"
              local heir
              for _, b in ipairs(st.addrs) do if in_subnet(b) then heir = heir or b end end
              if promote and heir then
                heir.secondary = nil
              else
                remove_addrs(st, in_subnet)
                remove_routes(st, function(r)
                  return r.family == 4 and r.protocol == "kernel" and r.dev == dev and r.dst == dst_text(subnet)
                end)
              end
            end
            -- The last IPv4 address of a link takes its IPv4 routes.
            if not has_addr(st, dev, function(b) return b.family == 4 end) then
              remove_routes(st, function(r) return r.family == 4 and r.dev == dev end)
            end
          else
            local prefix = net_of(a.p)
            local others = has_addr(st, dev, function(b)
              return b.family == 6 and b.p.len == a.p.len and ip.contains(prefix, b.p)
            end)
            if not others then
              remove_routes(st, function(r)
                return r.family == 6 and r.protocol == "kernel" and r.dev == dev and r.dst == dst_text(prefix)
              end)
            end
          end
          settle()
          return true
        end
      end
      return err("EADDRNOTAVAIL", addr_where(p, dev, st) .. ": ipv" .. p.family
        .. ": Address not found: Cannot assign requested address")
    end, "delete"),
    -- dump([ns [, dev]]): IPv4 first, then IPv6 (global before link scope).
    dump = api(function(ns, dev)
      if dev ~= nil then check_ifname_arg(2, dev) end
      check_ns_arg(1, ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      if dev and not st.links[dev] then return no_link(st, dev) end
      local list = {}
      for i, a in ipairs(st.addrs) do
        if (not dev or a.dev == dev) and st.links[a.dev] then list[#list + 1] = { a = a, i = i } end
      end
      local rank = { global = 1, host = 2, link = 3 }
      table.sort(list, function(x, y)
        if x.a.family ~= y.a.family then return x.a.family < y.a.family end
        local lx, ly = st.links[x.a.dev].index, st.links[y.a.dev].index
        if lx ~= ly then return lx < ly end
        if x.a.family == 6 and x.a.scope ~= y.a.scope then return rank[x.a.scope] < rank[y.a.scope] end
        return x.i < y.i
      end)
      local out = {}
      for _, x in ipairs(list) do
        local a = x.a
        out[#out + 1] = { dev = a.dev, index = st.links[a.dev].index, addr = a.addr, family = a.family,
          scope = a.scope, tentative = false }
      end
      return out
    end, "dump"),
  }

  --------------------------------------------------------------------
  -- Routes: the checks of bindings/route.c, then the kernel's.
  local function check_route(o)
    local family = opt_int(1, o, "family", 0, 0, 6)
    if family ~= 0 and family ~= 4 and family ~= 6 then field_error(1, "family", "4 or 6 expected") end
    local dst = opt_string(1, o, "dst", true)
    local p
    if dst == "default" then
      if family == 0 then field_error(1, "family", "a default route needs family 4 or 6") end
      p = parse(family == 4 and "0.0.0.0/0" or "::/0")
    else
      p = parse(dst)
      if not p then field_error(1, "dst", "'" .. dst .. "' is not an address/prefix") end
      if family ~= 0 and p.family ~= family then
        field_error(1, "dst", string.format("'%s' is not an IPv%d prefix", dst, family))
      end
    end
    local via = opt_string(1, o, "via", false)
    local gw
    if via then
      gw = ip.parse_addr(via)
      if not gw then field_error(1, "via", "'" .. via .. "' is not an address") end
    end
    local dev = opt_string(1, o, "dev", false)
    if dev and not ifname_valid(dev) then field_error(1, "dev", "invalid interface name '" .. dev .. "'") end
    if not via and not dev then argerror(1, "a route needs field 'via' or 'dev'") end
    local metric = opt_int(1, o, "metric", 0, 0, 0xffffffff)
    local tbl = opt_int(1, o, "table", 0, 0, 0xffffffff)
    check_ns_field(1, o, "ns")
    return { p = p, gw = gw, via = via and addr_text(gw), dev = dev, metric = metric,
      table = tbl == 0 and 254 or tbl, family = p.family }
  end
  local function route_where(spec, st)
    return "route " .. spec.text .. " in namespace " .. label(st)
  end
  -- A route of no gateway that covers address GW (on DEV if given).
  local function onlink(st, gw, dev)
    for _, r in ipairs(st.routes) do
      if r.family == gw.family and not r.via and (not dev or r.dev == dev) and ip.contains(r.p, gw) then
        return r
      end
    end
  end

  core.route = {
    -- add{ns, family, dst, via, dev, metric, table, replace}
    add = api(function(o)
      check_fields(1, o, "route.add")
      local spec = check_route(o)
      local replace = opt_bool(1, o, "replace", false)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      spec.text = o.dst
      local p = spec.p
      if p.family == 4 and not ip.is_network(p) then
        return err("EINVAL", route_where(spec, st) .. ": Invalid prefix for given prefix length: Invalid argument")
      end
      local dev = spec.dev
      if dev then
        local l = st.links[dev]
        if not l then
          local _, why = no_link(st, dev)
          return err("ENODEV", route_where(spec, st) .. ": " .. why:gsub("^ENODEV: ", ""))
        end
        if not l.up then
          return err("ENETDOWN", route_where(spec, st) .. (p.family == 4
            and ": Device for nexthop is not up" or ": Nexthop device is not up") .. ": Network is down")
        end
      end
      if spec.gw then
        if spec.gw.family ~= p.family then
          return err("EINVAL", route_where(spec, st) .. ": Nexthop has invalid gateway: Invalid argument")
        end
        if spec.gw.family == 6 and is_ll(spec.gw) then
          if not dev then
            return err("EINVAL", route_where(spec, st) .. ": Egress device not specified: Invalid argument")
          end
        else
          local r = onlink(st, spec.gw, dev)
          if not r then
            if p.family == 4 then
              return err("ENETUNREACH", route_where(spec, st) .. ": Nexthop has invalid gateway: Network is unreachable")
            end
            if dev then
              return err("EINVAL", route_where(spec, st) .. ": Nexthop has invalid gateway or device mismatch: Invalid argument")
            end
            return err("EHOSTUNREACH", route_where(spec, st) .. ": No route to host")
          end
          dev = dev or r.dev
        end
      end
      local metric = spec.metric
      if p.family == 6 and metric == 0 then metric = 1024 end
      local dst = dst_text(p)
      local found
      for i, r in ipairs(st.routes) do
        if r.family == p.family and r.dst == dst and r.table == spec.table and r.metric == metric then found = i end
      end
      if found and not replace then
        return err("EEXIST", route_where(spec, st) .. ": File exists")
      end
      local ok
      ok, e, n = record("route.add", o.dst)
      if not ok then return ok, e, n end
      local r = { family = p.family, dst = dst, p = net_of(p), via = spec.via, dev = dev, protocol = "static",
        scope = (p.family == 4 and not spec.via) and "link" or "global", metric = metric, table = spec.table }
      if found then st.routes[found] = r else st.routes[#st.routes + 1] = r end
      return true
    end, "add"),
    delete = api(function(o)
      check_fields(1, o, "route.delete")
      local spec = check_route(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      spec.text = o.dst
      local dst = dst_text(spec.p)
      local metric = spec.metric
      if spec.family == 6 and metric == 0 then metric = nil end
      if spec.family == 4 and o.metric == nil then metric = nil end
      for i, r in ipairs(st.routes) do
        if r.family == spec.family and r.dst == dst and r.table == spec.table
          and (metric == nil or r.metric == metric) and (not spec.via or r.via == spec.via)
          and (not spec.dev or r.dev == spec.dev) then
          local ok
          ok, e, n = record("route.delete", o.dst)
          if not ok then return ok, e, n end
          table.remove(st.routes, i)
          return true
        end
      end
      return err("ESRCH", route_where(spec, st) .. ": No such process")
    end, "delete"),
    -- dump([ns [, {family, table}]]): the main table's unicast routes.
    dump = api(function(ns, opts)
      local family, tbl = nil, 254
      if opts ~= nil then
        check_fields(2, opts, "route.dump")
        local f = opt_int(2, opts, "family", 0, 0, 6)
        if f ~= 0 and f ~= 4 and f ~= 6 then field_error(2, "family", "4 or 6 expected") end
        family = f ~= 0 and f or nil
        local t = opt_int(2, opts, "table", 0, 0, 0xffffffff)
        tbl = t ~= 0 and t or 254
      end
      check_ns_arg(1, ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local list = {}
      for i, r in ipairs(st.routes) do
        if (not family or r.family == family) and r.table == tbl then list[#list + 1] = { r = r, i = i } end
      end
      table.sort(list, function(x, y)
        if x.r.family ~= y.r.family then return x.r.family < y.r.family end
        return x.i < y.i
      end)
      local out = {}
      for _, x in ipairs(list) do
        local r = x.r
        out[#out + 1] = { dst = r.dst, via = r.via, dev = r.dev, protocol = r.protocol, scope = r.scope,
          family = r.family, metric = r.metric, table = r.table }
      end
      return out
    end, "dump"),
  }

  --------------------------------------------------------------------
  local function check_sysctl_key(arg, key)
    if type(key) ~= "string" then argerror(arg, "string expected, got " .. type(key)) end
    if not (key:sub(1, 4) == "net." or key:sub(1, 4) == "net/") or #key > 200 or key:find("..", 1, true)
      or key:find("//", 1, true) or key:find("[^%w_%-%./]") or key:find("[%./]$") then
      argerror(arg, "'" .. key .. "' is not a net.* sysctl key")
    end
    return key
  end
  -- A per-device key of no such device: nil, err, "ENOENT"; else true.
  local function sysctl_present(st, key)
    local dev = sysctl_dev(skey(key))
    if dev and not st.links[dev] then
      return err("ENOENT", "sysctl " .. key .. " in namespace " .. label(st) .. ": No such file or directory")
    end
    return true
  end

  core.sysctl = {
    get = api(function(ns, key)
      check_sysctl_key(2, key)
      check_ns_arg(1, ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local ok
      ok, e, n = sysctl_present(st, key)
      if not ok then return ok, e, n end
      return sysctl_value(st, skey(key))
    end, "get"),
    set = api(function(ns, key, value)
      check_sysctl_key(2, key)
      if type(value) ~= "string" and math.type(value) ~= "integer" then
        argerror(3, "string or integer expected, got " .. type(value))
      end
      check_ns_arg(1, ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local ok
      ok, e, n = sysctl_present(st, key)
      if not ok then return ok, e, n end
      ok, e, n = record("sysctl.set", key)
      if not ok then return ok, e, n end
      local k, v = skey(key), tostring(value)
      st.sysctl[k] = v
      -- "all" reaches every device (and the default for new ones), as in
      -- the kernel's addrconf and devinet.
      local fam, knob = k:match("^net/(ipv[46])/conf/all/([^/]+)$")
      if k == "net/ipv4/ip_forward" then fam, knob = "ipv4", "forwarding" end
      if fam and (knob == "forwarding" or (fam == "ipv6" and knob == "disable_ipv6")) then
        if fam == "ipv4" then st.sysctl["net/ipv4/ip_forward"] = v end
        st.sysctl["net/" .. fam .. "/conf/all/" .. knob] = v
        st.sysctl["net/" .. fam .. "/conf/default/" .. knob] = v
        for name in pairs(st.links) do st.sysctl["net/" .. fam .. "/conf/" .. name .. "/" .. knob] = v end
      end
      settle()
      return true
    end, "set"),
  }

  --------------------------------------------------------------------
  -- Keys: a private key is a table; its public key is "P<secret>" padded
  -- to look like (canonical) base64; sealing is reversible text.
  local key_mt = {}
  key_mt.__index = {
    public = function(k) return k.pub end,
    export = function(k) return k.secret end,
    seal = function(k, recipient)
      -- Canonical base64 like a real sealed box (the NR config checks it),
      -- reversible for open_sealed.
      return (require("fake_keys").b64encode(recipient .. "|" .. k.secret))
    end,
    save = function(k, path) S.files[path] = k.secret; return true end,
    close = function() end,
    equal = function(a, b) return a.secret == b.secret end,
  }
  key_mt.__close = function() end
  local serial = 0
  local function make_key(secret)
    local pub = ("P" .. secret):gsub("[^%w]", "x")
    -- 43 characters and "=": the last one ends in zero bits, as in any
    -- canonical base64 of 32 bytes (the real core.key.valid_public).
    pub = (pub .. string.rep("A", 42)):sub(1, 42) .. "A="
    return setmetatable({ secret = secret, pub = pub }, key_mt)
  end
  fake_core.make_key = make_key
  core.key = {
    generate = function()
      serial = serial + 1
      return make_key("k" .. serial)
    end,
    generate_psk = function()
      serial = serial + 1
      return make_key("psk" .. serial)
    end,
    private = function(s) return make_key(s) end,
    load = function(path)
      if not S.files[path] then return err("ENOENT", "no key file " .. path) end
      return make_key(S.files[path])
    end,
    open_sealed = function(sealed, node_key)
      local text = require("fake_keys").b64decode(sealed) or ""
      local recipient, secret = text:match("^(.-)|(.+)$")
      if recipient ~= node_key.pub then return err("EBADMSG", "does not open") end
      return make_key(secret)
    end,
    valid_public = function(s) return real.key.valid_public(s) end,
  }

  --------------------------------------------------------------------
  -- WireGuard, the userspace backend (wireguard-go): a daemon runs in its
  -- birth namespace (where its UDP socket is), serves one interface (a
  -- TUN link made in ns) and is found by name, as the real API
  -- socket /run/wireguard/NAME.sock is.

  -- Ends a daemon: its interface goes with it, wherever it is.
  function end_daemon(d)
    if S.daemons[d.name] ~= d then return end
    S.daemons[d.name] = nil
    local l = d.link
    d.link = nil
    if l then
      l.daemon = nil
      drop_link(l)
    end
    if d.placeholder then drop_link(d.placeholder) end
    d.placeholder = nil
  end

  local function port_taken(d, port)
    for _, other in pairs(S.daemons) do
      if other ~= d and other.birth == d.birth and other.listen_port == port then return true end
    end
    return false
  end
  -- wireguard-go binds a port of its own until one is set.
  local function ephemeral(d)
    repeat S.next_port = S.next_port + 1 until not port_taken(d, S.next_port)
    return S.next_port
  end
  local function no_wg(st, name)
    return err("ENOENT", "wireguard '" .. name .. "' in namespace " .. label(st)
      .. ": the kernel has no WireGuard (module not loaded?): No such file or directory")
  end

  local function peer_error(i, field, why)
    argerror(1, string.format("peers[%d].%s: %s", i, field, why))
  end
  local function peer_field(p, i, field, ty)
    local v = p[field]
    if v == nil then return nil end
    if type(v) ~= ty then peer_error(i, field, ty .. " expected, got " .. type(v)) end
    return v
  end
  -- peers[i] as the bindings convert it; raises on a caller's mistake.
  local function convert_peer(p, i)
    for k in pairs(p) do
      if type(k) ~= "string" or not FIELDS["wg.set peers[]"][k] then peer_error(i, tostring(k), "unknown field") end
    end
    local c = {}
    c.public_key = peer_field(p, i, "public_key", "string")
    if not c.public_key then peer_error(i, "public_key", "required") end
    if not real.key.valid_public(c.public_key) then
      peer_error(i, "public_key", "malformed public key '" .. c.public_key .. "'")
    end
    c.remove = peer_field(p, i, "remove", "boolean")
    c.update_only = peer_field(p, i, "update_only", "boolean")
    c.replace_allowed_ips = peer_field(p, i, "replace_allowed_ips", "boolean")
    if p.preshared_key ~= nil then
      if p.preshared_key == false then c.psk = false
      elseif is_key(p.preshared_key) then c.psk = true
      else peer_error(i, "preshared_key", "key (core.key) or false expected") end
    end
    local ep = peer_field(p, i, "endpoint", "string")
    if ep then
      c.endpoint = parse_endpoint(ep)
      if not c.endpoint then peer_error(i, "endpoint", "'" .. ep .. "' is not an endpoint (a.b.c.d:port or [v6]:port)") end
    end
    local ka = peer_field(p, i, "persistent_keepalive", "number")
    if ka ~= nil then
      if math.type(ka) == "float" and ka == math.floor(ka) then ka = math.tointeger(ka) end
      if math.type(ka) ~= "integer" or ka < 0 or ka > 65535 then
        peer_error(i, "persistent_keepalive", "integer 0..65535 expected")
      end
      c.keepalive = ka
    end
    local aips = peer_field(p, i, "allowed_ips", "table")
    if aips then
      c.allowed_ips = {}
      for k = 1, #aips do
        local text = rawget(aips, k)
        local pfx = type(text) == "string" and parse(text)
        if not pfx then
          peer_error(i, "allowed_ips", string.format("entry %d: '%s' is not a prefix", k,
            type(text) == "string" and text or type(text)))
        end
        c.allowed_ips[k] = cidr(net_of(pfx))
      end
    end
    return c
  end

  -- One peer of a set, as WireGuard applies it: an update of the peer
  -- with that key (made when missing), never a replacement.
  local function apply_peer(d, c)
    local at
    for i, q in ipairs(d.peers) do if q.public_key == c.public_key then at = i end end
    if c.remove then
      if at then table.remove(d.peers, at) end
      return
    end
    if c.update_only and not at then return end
    local peer = at and d.peers[at]
    if not peer then
      peer = { public_key = c.public_key, persistent_keepalive = 0, allowed_ips = {}, has_preshared_key = false }
      d.peers[#d.peers + 1] = peer
    end
    if c.psk ~= nil then peer.has_preshared_key = c.psk end
    if c.endpoint then peer.endpoint = c.endpoint end
    if c.keepalive then peer.persistent_keepalive = c.keepalive end
    if c.replace_allowed_ips then peer.allowed_ips = {} end
    for _, a in ipairs(c.allowed_ips or {}) do
      -- An AllowedIP routes to one peer: it moves from any other.
      for _, q in ipairs(d.peers) do
        for k = #q.allowed_ips, 1, -1 do
          if q ~= peer and q.allowed_ips[k] == a then table.remove(q.allowed_ips, k) end
        end
      end
      local have = false
      for _, b in ipairs(peer.allowed_ips) do if b == a then have = true end end
      if not have then peer.allowed_ips[#peer.allowed_ips + 1] = a end
    end
  end

  core.wg = {
    -- create{name, birth_ns, ns, mtu, backend, program, log, timeout_ms}
    create = api(function(o)
      check_fields(1, o, "wg.create")
      opt_ifname(1, o, "name", true)
      local mtu = opt_int(1, o, "mtu", 0, 576, 65535)
      local backend = opt_string(1, o, "backend", false)
      if backend and backend ~= "auto" and backend ~= "kernel" and backend ~= "userspace" then
        field_error(1, "backend", "'" .. backend .. "' is not auto, kernel or userspace")
      end
      opt_string(1, o, "program", false)
      opt_string(1, o, "log", false)
      opt_int(1, o, "timeout_ms", 0, 0, 600000)
      check_ns_field(1, o, "birth_ns")
      check_ns_field(1, o, "ns")
      local birth, e, n = need(o.birth_ns)
      if not birth then return birth, e, n end
      local target
      target, e, n = need(o.ns)
      if not target then return target, e, n end
      local ok
      ok, e, n = record("wg.create", o.name)
      if not ok then return ok, e, n end
      -- This fake has no kernel WireGuard (wg.kernel_available).
      if backend == "kernel" then
        return err("EOPNOTSUPP", "link '" .. o.name .. "' in namespace " .. label(birth)
          .. ": Unknown device type: Operation not supported")
      end
      if S.daemons[o.name] then
        return err("EEXIST", "a userspace WireGuard already serves '" .. o.name .. "': File exists")
      end
      if target.links[o.name] or birth.links[o.name] then
        return err("EEXIST", "link '" .. o.name .. "' already exists: File exists")
      end
      -- A daemon a killed create left still starting would take the name.
      for i = #S.strays, 1, -1 do
        local s = S.strays[i]
        if s.name == o.name and s.birth == birth then table.remove(S.strays, i) end
      end
      local l = { name = o.name, kind = "tun", mtu = mtu > 0 and mtu or 1420 }
      add_link(target, l)
      -- Made in the target and handed over: the daemon looked it up by
      -- name where it runs, so a placeholder, down, sits there as long as
      -- it lives (core/wg_tun.c).
      local placeholder
      if birth ~= target then
        placeholder = { name = o.name, kind = "tun", mtu = 1420 }
        add_link(birth, placeholder)
      end
      local d = { name = o.name, pid = S.next_pid, birth = birth, link = l, placeholder = placeholder,
        fwmark = 0, peers = {} }
      S.next_pid = S.next_pid + 1
      l.daemon = d
      S.daemons[o.name] = d
      d.listen_port = ephemeral(d)
      settle()
      return { backend = "userspace", pid = d.pid }
    end, "create"),
    -- set{ns, name, private_key, listen_port, fwmark, replace_peers, peers}:
    -- what is absent stays as it is.
    set = api(function(o)
      check_fields(1, o, "wg.set")
      check_ns_field(1, o, "ns")
      local name = opt_ifname(1, o, "name", true)
      local pk = o.private_key
      if pk ~= nil and pk ~= false and not is_key(pk) then
        field_error(1, "private_key", "private key (core.key) or false expected")
      end
      local port = opt_int(1, o, "listen_port", nil, 0, 65535)
      local fwmark = opt_int(1, o, "fwmark", nil, 0, 0xffffffff)
      local replace_peers = opt_bool(1, o, "replace_peers", false)
      local peers
      if o.peers ~= nil then
        if type(o.peers) ~= "table" then field_error(1, "peers", "array of peers expected") end
        peers = {}
        for i = 1, #o.peers do
          local p = rawget(o.peers, i)
          if type(p) ~= "table" then field_error(1, "peers", string.format("entry %d is not a table", i)) end
          peers[i] = convert_peer(p, i)
        end
      end
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local d = S.daemons[name]
      if not d then return no_wg(st, name) end
      local ok
      ok, e, n = record("wg.set", name)
      if not ok then return ok, e, n end
      -- In the order of the userspace API: a refused port stops the rest.
      if pk == false then d.public_key = nil elseif pk then d.public_key = pk:public() end
      if port and port ~= d.listen_port then
        if port ~= 0 and port_taken(d, port) then
          d.listen_port = 0
          return err("EADDRINUSE", "userspace WireGuard '" .. name .. "' refused the change: Address already in use")
        end
        d.listen_port = port ~= 0 and port or ephemeral(d)
      end
      if fwmark then d.fwmark = fwmark end
      if replace_peers then d.peers = {} end
      for _, c in ipairs(peers or {}) do apply_peer(d, c) end
      return true
    end, "set"),
    get = api(function(o)
      check_fields(1, o, "wg.get")
      local name = opt_ifname(1, o, "name", true)
      check_ns_field(1, o, "ns")
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local d = S.daemons[name]
      if not d then return no_wg(st, name) end
      local peers = {}
      for i, p in ipairs(d.peers) do
        local aips = {}
        for k, a in ipairs(p.allowed_ips) do aips[k] = a end
        peers[i] = { public_key = p.public_key, endpoint = p.endpoint,
          persistent_keepalive = p.persistent_keepalive, allowed_ips = aips,
          has_preshared_key = p.has_preshared_key, last_handshake = 0, last_handshake_nsec = 0,
          rx_bytes = 0, tx_bytes = 0 }
      end
      return { name = name, public_key = d.public_key, listen_port = d.listen_port, fwmark = d.fwmark,
        backend = "userspace", peers = peers }
    end, "get"),
    -- delete{ns, name, birth_ns}: stops the daemon (its link goes with
    -- it); birth_ns also ends daemons for the name still starting there.
    -- (The real one's stray pass also kills a serving daemon born in
    -- birth_ns, and may then answer ENODEV for the link gone with it.)
    delete = api(function(o)
      check_fields(1, o, "wg.delete")
      local name = opt_ifname(1, o, "name", true)
      check_ns_field(1, o, "ns")
      check_ns_field(1, o, "birth_ns")
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local birth
      if o.birth_ns ~= nil then
        birth, e, n = need(o.birth_ns)
        if not birth then return birth, e, n end
      end
      local ok
      ok, e, n = record("wg.delete", name)
      if not ok then return ok, e, n end
      if birth then
        for i = #S.strays, 1, -1 do
          local s = S.strays[i]
          if s.name == name and s.birth == birth then table.remove(S.strays, i) end
        end
      end
      local d = S.daemons[name]
      if d then
        end_daemon(d)
        settle()
        return true
      end
      local l = st.links[name]
      if not l then return no_link(st, name) end
      drop_link(l)
      settle()
      return true
    end, "delete"),
    -- strays{birth_ns, name}: the pids of daemons for NAME in birth_ns, as
    -- the real one answers: those still starting, and (it does not tell
    -- them apart) the one serving, when it was born there.
    strays = api(function(o)
      check_fields(1, o, "wg.strays")
      local name = opt_ifname(1, o, "name", true)
      check_ns_field(1, o, "birth_ns")
      local birth, e, n = need(o.birth_ns)
      if not birth then return birth, e, n end
      local out = {}
      local d = S.daemons[name]
      if d and d.birth == birth then out[#out + 1] = d.pid end
      for _, s in ipairs(S.strays) do
        if s.name == name and s.birth == birth then out[#out + 1] = s.pid end
      end
      return out
    end, "strays"),
    pid = api(function(name)
      check_ifname_arg(1, name)
      local d = S.daemons[name]
      if d then return d.pid end
      return err("ENOENT", "no userspace WireGuard serves '" .. name .. "': No such file or directory")
    end, "pid"),
    kernel_available = function() return false end,
  }

  -- A daemon for NAME that a killed create left starting in BIRTH_NS (no
  -- API socket, no interface yet): wg.strays finds it, wg.create and
  -- wg.delete with birth_ns end it. Returns its pid.
  function S.add_stray(name, birth_ns)
    local birth = assert(resolve(birth_ns), "no such namespace")
    local pid = S.next_pid
    S.next_pid = S.next_pid + 1
    S.strays[#S.strays + 1] = { name = name, birth = birth, pid = pid }
    return pid
  end

  --------------------------------------------------------------------
  -- Files are real (a temporary directory of the test); only the kernel
  -- is faked.
  core.fs = {
    mkdir = function(path) os.execute("mkdir -p '" .. path .. "'"); return true end,
    write = function(path, data, mode)
      local f = assert(io.open(path, "w"))
      f:write(data)
      f:close()
      os.execute(string.format("chmod %o '%s'", mode or tonumber("600", 8), path))
      return true
    end,
    list = function(dir)
      local out = {}
      local p = io.popen("ls -1 '" .. dir .. "' 2>/dev/null")
      for line in p:lines() do out[#out + 1] = line end
      p:close()
      return out
    end,
    remove = function(path)
      local ok = os.remove(path)
      if not ok then return err("ENOENT", "no file " .. path) end
      return true
    end,
    stat = function(path)
      local p = io.popen("stat -c '%F|%s|%i|%.9Y' '" .. path .. "' 2>/dev/null")
      local line = p:read("l")
      p:close()
      if not line then return err("ENOENT", "no file " .. path) end
      local kind, size, ino, sec, frac = line:match("^(.-)|(%d+)|(%d+)|(%d+)%.(%d+)$")
      local types = { ["regular file"] = "file", ["regular empty file"] = "file",
        directory = "dir", socket = "socket", ["symbolic link"] = "symlink" }
      return { type = types[kind] or "other", size = tonumber(size), ino = tonumber(ino),
        mtime_ns = tonumber(sec) * 1000000000 + tonumber(frac) }
    end,
    -- One process: a lock is held or not; a second holder is refused.
    lock = function(path)
      if S.locks[path] then return err("EAGAIN", "lock " .. path .. " is held") end
      S.locks[path] = true
      local h = { close = function() S.locks[path] = nil end }
      return setmetatable(h, { __close = function() S.locks[path] = nil end })
    end,
  }

  --------------------------------------------------------------------
  -- Tables as applied, read back as the kernel does: the description in
  -- its normalised shape (what apply got: the reconciler sends validated
  -- ones), handles and counters apart in .live. The vocabulary and the
  -- checks of a description are the real core's (core.nft.check converts
  -- as apply does), so that both accept and refuse the same.
  local real_nft = real.nft
  local function deep_copy(v)
    if type(v) ~= "table" then return v end
    local t = {}
    for k, x in pairs(v) do t[k] = deep_copy(x) end
    return t
  end
  local function table_key(opts)
    opts = opts or {}
    return (opts.family or "inet") .. " " .. (opts.table or "zmesh")
  end
  local function check_table_opts(opts, cname)
    if opts == nil then return end
    check_fields(2, opts, cname)
    opt_string(2, opts, "family", false)
    opt_string(2, opts, "table", false)
  end
  core.nft = {
    names = real_nft.names, numbers = real_nft.numbers, defaults = real_nft.defaults,
    limits = real_nft.limits, check = real_nft.check,
    apply = api(function(ns, ruleset)
      check_ns_arg(1, ns)
      local ok, res, e2, n2 = pcall(real_nft.check, ruleset)
      if not ok then
        -- The description is apply's argument #2.
        local why = tostring(res):match("^bad argument #1 to '[^']*' %((.*)%)$")
        if not why then error(res, 0) end
        argerror(2, why)
      end
      if not res then return res, e2, n2 end
      local st, e, n = need(ns)
      if not st then return st, e, n end
      ok, e, n = record("nft.apply", tostring(ns))
      if not ok then return ok, e, n end
      st.nft = st.nft or {}
      st.nft[table_key(ruleset)] = deep_copy(ruleset)
      return true
    end, "apply"),
    dump = api(function(ns, opts)
      check_ns_arg(1, ns)
      check_table_opts(opts, "nft.dump")
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local t = st.nft and st.nft[table_key(opts)]
      if not t then return err("ENOENT", "no such table") end
      local d = deep_copy(t)
      d.live = { handle = 1, generation = 1, chains = {} }
      for i, c in ipairs(d.chains or {}) do
        local rules = {}
        for j, r in ipairs(c.rules or {}) do
          rules[j] = { handle = j, packets = r.counter and 0 or nil, bytes = r.counter and 0 or nil }
        end
        d.live.chains[i] = { handle = i, rules = rules }
      end
      return d
    end, "dump"),
    delete = api(function(ns, opts)
      check_ns_arg(1, ns)
      check_table_opts(opts, "nft.delete")
      local st, e, n = need(ns)
      if not st then return st, e, n end
      if st.nft then st.nft[table_key(opts)] = nil end
      return record("nft.delete", tostring(ns))
    end, "delete"),
  }

  -- Forget the changing calls seen so far.
  function S.reset_calls() S.calls = {} end

  S.core = core
  return S
end

-- Load zmesh modules afresh against this fake: returns require.
function fake_core.loader(fake)
  for name in pairs(package.loaded) do
    if name:match("^zmesh") then package.loaded[name] = nil end
  end
  package.loaded["zmesh.core"] = fake.core
  return require
end

-- A temporary directory with a node config for the fake node; returns
-- its config path.
function fake_core.node_config(dir, extra)
  os.execute("mkdir -p '" .. dir .. "'")
  local json = require "zmesh.json"
  local cfg = { node_id = "n1", uplink = { mode = "macvlan", nic = "eth0",
      addresses = { "203.0.113.11/24" }, gateway = "203.0.113.254" },
    state_dir = dir .. "/state", run_dir = dir .. "/run", wireguard_backend = "userspace" }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  local path = dir .. "/node.json"
  local f = assert(io.open(path, "w"))
  f:write(json.encode(cfg))
  f:close()
  return path
end

return fake_core
