-- An in-memory stand-in for zmesh.core, for unit tests without root: a
-- small model of namespaces, links, addresses, routes, sysctls, WireGuard
-- devices, keys and files. It answers like the real bindings (true, or
-- nil, "ENAME: message", "ENAME") and records every changing call in
-- fake.calls, so tests can assert what an apply did.
local fake_core = {}

local function err(name, msg) return nil, name .. ": " .. msg, name end

function fake_core.new()
  local S = { netns = {}, stale = {}, host = nil, files = {}, calls = {}, next_index = 10,
    fail = {}, locks = {} }
  local function new_ns() return { links = { lo = { name = "lo", index = 1, up = false, mtu = 65536 } },
    addrs = {}, routes = {}, sysctl = {} } end
  S.host = new_ns()
  S.host.links.eth0 = { name = "eth0", index = 2, up = true, mtu = 1500 }

  local function resolve(ns)
    if ns == nil then return S.host end
    if type(ns) == "table" then return ns.ns or S.host end
    return S.netns[ns]
  end
  local function record(op, detail)
    S.calls[#S.calls + 1] = op .. (detail and (" " .. detail) or "")
    if S.fail[op] then return err(S.fail[op], "injected failure in " .. op) end
    return true
  end
  -- A link goes with its addresses and the routes through it.
  local function drop_link(st, name)
    st.links[name] = nil
    for i = #st.addrs, 1, -1 do if st.addrs[i].dev == name then table.remove(st.addrs, i) end end
    for i = #st.routes, 1, -1 do if st.routes[i].dev == name then table.remove(st.routes, i) end end
  end
  local function need(ns)
    local st = resolve(ns)
    if not st then return nil, err("ENOENT", "namespace '" .. tostring(ns) .. "' does not exist") end
    return st
  end

  local core = { version = "fake" }
  core.netns = {
    create = function(name)
      if S.netns[name] or S.stale[name] then return err("EEXIST", "namespace exists") end
      local ok, e, n = record("netns.create", name)
      if not ok then return ok, e, n end
      S.netns[name] = new_ns()
      return true
    end,
    delete = function(name)
      local st = S.netns[name]
      if not st and S.stale[name] then
        S.stale[name] = nil
        return record("netns.delete", name)
      end
      if not st then return err("ENOENT", "namespace does not exist") end
      local ok, e, n = record("netns.delete", name)
      if not ok then return ok, e, n end
      -- A veth pair dies with either end.
      for _, l in pairs(st.links) do
        if l.peer then drop_link(l.peer.st, l.peer.name) end
        if l.daemon then S.daemons[l.name] = nil end
      end
      S.netns[name] = nil
      return true
    end,
    exists = function(name) return S.netns[name] ~= nil end,
    -- Live names, and the dead ones (S.stale) a killed change leaves.
    list = function()
      local out = {}
      for name in pairs(S.netns) do out[#out + 1] = name end
      for name in pairs(S.stale) do out[#out + 1] = name end
      table.sort(out)
      return out
    end,
    open = function(name)
      local st = resolve(name)
      if not st then return err("ENOENT", "no namespace") end
      return setmetatable({ ns = st }, { __close = function() end })
    end,
  }
  S.daemons = {}

  local function add_link(st, l)
    if st.links[l.name] then return err("EEXIST", "link '" .. l.name .. "' exists") end
    S.next_index = S.next_index + 1
    l.index, l.up, l.mtu = S.next_index, false, l.mtu or 1500
    st.links[l.name] = l
    return true
  end
  local function copy(l)
    local c = {}
    for k, v in pairs(l) do if k ~= "peer" and k ~= "st" then c[k] = v end end
    return c
  end

  core.link = {
    veth = function(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local pst = o.peer_ns == nil and st or resolve(o.peer_ns)
      if not pst then return err("ENOENT", "peer namespace missing") end
      local ok
      ok, e, n = record("link.veth", o.name)
      if not ok then return ok, e, n end
      if st.links[o.name] or pst.links[o.peer] then return err("EEXIST", "link exists") end
      local a = { name = o.name, kind = "veth", mtu = o.mtu }
      local b = { name = o.peer, kind = "veth", mtu = o.mtu }
      a.peer, b.peer = { st = pst, name = o.peer }, { st = st, name = o.name }
      add_link(st, a)
      add_link(pst, b)
      return true
    end,
    bridge = function(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local ok
      ok, e, n = record("link.bridge", o.name)
      if not ok then return ok, e, n end
      return add_link(st, { name = o.name, kind = "bridge", mtu = o.mtu })
    end,
    macvlan = function(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local pst = resolve(o.parent_ns)
      if not pst.links[o.parent] then return err("ENODEV", "no parent " .. o.parent) end
      local ok
      ok, e, n = record("link.macvlan", o.name)
      if not ok then return ok, e, n end
      return add_link(st, { name = o.name, kind = "macvlan", mtu = o.mtu })
    end,
    set = function(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local l = st.links[o.name]
      if not l then return err("ENODEV", "no link " .. o.name) end
      local ok
      ok, e, n = record("link.set", o.name)
      if not ok then return ok, e, n end
      if o.master ~= nil then
        if o.master and not st.links[o.master] then return err("ENODEV", "no master") end
        l.master = o.master or nil
      end
      if o.up ~= nil then l.up = o.up end
      if o.mtu then l.mtu = o.mtu end
      if o.netns then
        local target = resolve(o.netns)
        st.links[o.name] = nil
        l.name = o.rename or l.name
        target.links[l.name] = l
      elseif o.rename then
        st.links[o.name] = nil
        l.name = o.rename
        st.links[l.name] = l
      end
      return true
    end,
    delete = function(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local l = st.links[o.name]
      if not l then return err("ENODEV", "no link " .. o.name) end
      local ok
      ok, e, n = record("link.delete", o.name)
      if not ok then return ok, e, n end
      drop_link(st, o.name)
      if l.peer then drop_link(l.peer.st, l.peer.name) end
      return true
    end,
    get = function(ns, name)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local l = st.links[name]
      if not l then return err("ENODEV", "no link " .. name) end
      return copy(l)
    end,
    dump = function(ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local out = {}
      for _, l in pairs(st.links) do out[#out + 1] = copy(l) end
      table.sort(out, function(a, b) return a.index < b.index end)
      return out
    end,
  }

  core.addr = {
    add = function(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      if not st.links[o.dev] then return err("ENODEV", "no link " .. o.dev) end
      for _, a in ipairs(st.addrs) do
        if a.dev == o.dev and a.addr == o.addr then return err("EEXIST", "address exists") end
      end
      local ok
      ok, e, n = record("addr.add", o.addr)
      if not ok then return ok, e, n end
      st.addrs[#st.addrs + 1] = { dev = o.dev, addr = o.addr, scope = "global",
        family = o.addr:find(":") and 6 or 4 }
      return true
    end,
    delete = function(o)
      local st = resolve(o.ns)
      for i, a in ipairs(st.addrs) do
        if a.dev == o.dev and a.addr == o.addr then
          record("addr.delete", o.addr)
          table.remove(st.addrs, i)
          return true
        end
      end
      return err("EADDRNOTAVAIL", "no such address")
    end,
    dump = function(ns, dev)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local out = {}
      for _, a in ipairs(st.addrs) do
        if (not dev or a.dev == dev) and st.links[a.dev] then out[#out + 1] = copy(a) end
      end
      return out
    end,
  }

  -- As the bindings: "default" needs its family, a prefix has its own.
  local function route_family(o)
    if o.dst == "default" then
      assert(o.family == 4 or o.family == 6, "bad argument #1 to 'add' (field 'family': a default route needs family 4 or 6)")
      return o.family
    end
    return o.dst:find(":") and 6 or 4
  end
  local function route_dst(o) return o.dst end

  core.route = {
    add = function(o)
      local st, e, n = need(o.ns)
      if not st then return st, e, n end
      local fam, dst = route_family(o), route_dst(o)
      for i, r in ipairs(st.routes) do
        if r.family == fam and r.dst == dst then
          if not o.replace then return err("EEXIST", "route exists") end
          table.remove(st.routes, i)
          break
        end
      end
      local ok
      ok, e, n = record("route.add", dst)
      if not ok then return ok, e, n end
      st.routes[#st.routes + 1] = { dst = dst, via = o.via, dev = o.dev, family = fam,
        protocol = "static", metric = 0, table = 254 }
      return true
    end,
    delete = function(o)
      local st = resolve(o.ns)
      local fam, dst = route_family(o), route_dst(o)
      for i, r in ipairs(st.routes) do
        if r.family == fam and r.dst == dst then
          record("route.delete", dst)
          table.remove(st.routes, i)
          return true
        end
      end
      return err("ESRCH", "no such route")
    end,
    dump = function(ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local out = {}
      for _, r in ipairs(st.routes) do out[#out + 1] = copy(r) end
      return out
    end,
  }

  core.sysctl = {
    get = function(ns, key)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      return st.sysctl[key] or "0"
    end,
    set = function(ns, key, value)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local ok
      ok, e, n = record("sysctl.set", key)
      if not ok then return ok, e, n end
      st.sysctl[key] = tostring(value)
      return true
    end,
  }

  -- Keys: a private key is a table; its public key is "pub:<secret>"
  -- padded to look like base64; sealing is reversible text.
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
    pub = (pub .. string.rep("A", 43)):sub(1, 43) .. "="
    return setmetatable({ secret = secret, pub = pub }, key_mt)
  end
  fake_core.make_key = make_key
  core.key = {
    generate = function()
      serial = serial + 1
      return make_key("k" .. serial)
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
    valid_public = function(s) return type(s) == "string" and #s == 44 end,
  }

  core.wg = {
    create = function(o)
      local target = resolve(o.ns)
      local ok, e, n = record("wg.create", o.name)
      if not ok then return ok, e, n end
      local l = { name = o.name, kind = "tun", daemon = true, mtu = o.mtu or 1420 }
      add_link(target, l)
      S.daemons[o.name] = { public_key = nil, peers = {}, link = l }
      return { backend = "userspace", pid = 4242 }
    end,
    set = function(o)
      local d = S.daemons[o.name]
      if not d then return err("ENOENT", "no daemon for " .. o.name) end
      local ok, e, n = record("wg.set", o.name)
      if not ok then return ok, e, n end
      if o.private_key then d.public_key = o.private_key:public() end
      if o.listen_port then d.listen_port = o.listen_port end
      for _, p in ipairs(o.peers or {}) do
        local found
        for i, q in ipairs(d.peers) do if q.public_key == p.public_key then found = i end end
        if p.remove then
          if found then table.remove(d.peers, found) end
        else
          local entry = { public_key = p.public_key, endpoint = p.endpoint,
            persistent_keepalive = p.persistent_keepalive or 0, allowed_ips = p.allowed_ips,
            last_handshake = 0, rx_bytes = 0, tx_bytes = 0 }
          if found then d.peers[found] = entry else d.peers[#d.peers + 1] = entry end
        end
      end
      return true
    end,
    get = function(o)
      local d = S.daemons[o.name]
      if not d then return err("ENOENT", "no WireGuard " .. o.name) end
      local peers = {}
      for i, p in ipairs(d.peers) do peers[i] = copy(p) end
      return { name = o.name, public_key = d.public_key, listen_port = d.listen_port or 0,
        backend = "userspace", peers = peers }
    end,
    delete = function(o)
      local d = S.daemons[o.name]
      record("wg.delete", o.name)
      if d then
        S.daemons[o.name] = nil
        for _, st in pairs(S.netns) do
          if st.links[o.name] == d.link then drop_link(st, o.name) end
        end
      end
      return true
    end,
    pid = function(name)
      if S.daemons[name] then return 4242 end
      return err("ENOENT", "no daemon")
    end,
    -- Daemons still starting: the fake's start is instant.
    strays = function() return {} end,
    kernel_available = function() return false end,
  }

  -- Files are real (a temporary directory of the test); only the kernel
  -- is faked.
  core.fs = {
    mkdir = function(path) os.execute("mkdir -p '" .. path .. "'"); return true end,
    write = function(path, data)
      local f = assert(io.open(path, "w"))
      f:write(data)
      f:close()
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
      local p = io.popen("stat -c %F '" .. path .. "' 2>/dev/null")
      local kind = p:read("l")
      p:close()
      if not kind then return err("ENOENT", "no file " .. path) end
      local types = { ["regular file"] = "file", ["regular empty file"] = "file",
        directory = "dir", socket = "socket", ["symbolic link"] = "symlink" }
      return { type = types[kind] or "other", size = 0 }
    end,
    -- One process: a lock is held or not; a second holder is refused.
    lock = function(path)
      if S.locks[path] then return err("EAGAIN", "lock " .. path .. " is held") end
      S.locks[path] = true
      local h = { close = function() S.locks[path] = nil end }
      return setmetatable(h, { __close = function() S.locks[path] = nil end })
    end,
  }
  -- Tables as applied: dump gives back their chains and rule comments.
  core.nft = {
    apply = function(ns, ruleset)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      local ok
      ok, e, n = record("nft.apply", tostring(ns))
      if not ok then return ok, e, n end
      st.nft = ruleset
      return true
    end,
    dump = function(ns)
      local st, e, n = need(ns)
      if not st then return st, e, n end
      if not st.nft then return err("ENOENT", "no table") end
      local chains = {}
      for i, c in ipairs(st.nft.chains) do
        local rules = {}
        for k, r in ipairs(c.rules or {}) do rules[k] = { comment = r.comment, exprs = 1 } end
        chains[i] = { name = c.name, hook = c.hook, policy = c.policy, rules = rules }
      end
      return { family = st.nft.family, table = st.nft.table, chains = chains }
    end,
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
