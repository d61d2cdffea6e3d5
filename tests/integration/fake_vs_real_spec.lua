-- The fake core (tests/lib/fake_core.lua) against the real one: ONE
-- sequence of calls runs on both, and after every step what each reads
-- back (namespaces, links, addresses, routes, sysctls, WireGuard) is
-- normalised and compared line by line. The unit tests trust the fake;
-- this is what keeps it honest.
--
-- The real side runs in namespaces of this run only (testns), removed
-- at the end, also on failure. The fake side uses the same names, in
-- memory. WireGuard is the userspace backend (wireguard-go), born in one
-- namespace and living in another.
--
-- What is normalised away, each where it is done, because it is the
-- kernel's choice and not a behaviour: ifindex numbers, MACs, the value
-- of a link-local address (not that it is there), DAD's tentative flag,
-- error texts (the error names are compared), daemon pids, the random
-- port wireguard-go binds before one is set, handshake times and byte
-- counters, dump order.
local real = require "zmesh.core"
local fake_core = require "fake_core"
local testns = require "testns"

local A, B, W = testns.name("fa"), testns.name("fb"), testns.name("fw")
-- WireGuard names are global (their API sockets are /run/wireguard/NAME.sock).
local W1, W2, W3 = "zt" .. testns.run_id .. "w1", "zt" .. testns.run_id .. "w2", "zt" .. testns.run_id .. "w3"
local PORT = 51820

-- Short tags for the names of this run, so that lines read well.
local TAGS = { [A] = "A", [B] = "B", [W] = "W", [W1] = "W1", [W2] = "W2", [W3] = "W3" }
local function tag(s) return TAGS[s] or s end

-- The private key is a real one, for both: the fake takes any core.key
-- and derives the same public key from it.
local key = real.key.generate()
local P1, P2 = real.key.generate():public(), real.key.generate():public()

-- The sequence: { text, function(core) return core.…(…) end }.
local steps = {
  { "create namespace A", function(c) return c.netns.create(A) end },
  { "create namespace B", function(c) return c.netns.create(B) end },
  { "create namespace W", function(c) return c.netns.create(W) end },
  { "veth va@A / vb@B, mtu 1400", function(c)
    return c.link.veth { ns = A, name = "va", peer = "vb", peer_ns = B, mtu = 1400 } end },
  -- A field the bindings do not know raises, with the same words.
  { "veth with a misspelt field", function(c)
    return c.link.veth { ns = A, name = "vx", peer = "vy", peer_namespace = B } end },
  { "bridge br0@A", function(c) return c.link.bridge { ns = A, name = "br0" } end },
  { "va into br0 (the bridge takes its MTU)", function(c) return c.link.set { ns = A, name = "va", master = "br0" } end },
  { "lo@A up", function(c) return c.link.set { ns = A, name = "lo", up = true } end },
  { "br0 up (a port without carrier)", function(c) return c.link.set { ns = A, name = "br0", up = true } end },
  { "va up (its peer is down)", function(c) return c.link.set { ns = A, name = "va", up = true } end },
  { "vb up: carrier on both ends", function(c) return c.link.set { ns = B, name = "vb", up = true } end },
  { "192.0.2.1/24 on br0", function(c) return c.addr.add { ns = A, dev = "br0", addr = "192.0.2.1/24" } end },
  { "2001:db8::1/64 on br0", function(c)
    return c.addr.add { ns = A, dev = "br0", addr = "2001:db8::1/64", nodad = true } end },
  { "192.0.2.2/24 on vb", function(c) return c.addr.add { ns = B, dev = "vb", addr = "192.0.2.2/24" } end },
  { "2001:db8::2/64 on vb", function(c)
    return c.addr.add { ns = B, dev = "vb", addr = "2001:db8::2/64", nodad = true } end },
  { "an address with a scope (no such field)", function(c)
    return c.addr.add { ns = A, dev = "br0", addr = "192.0.2.9/24", scope = "link" } end },
  { "192.0.2.1/24 on br0 again", function(c) return c.addr.add { ns = A, dev = "br0", addr = "192.0.2.1/24" } end },
  { "route 198.51.100.0/24 via 192.0.2.2 (no dev)", function(c)
    return c.route.add { ns = A, dst = "198.51.100.0/24", via = "192.0.2.2" } end },
  { "IPv6 default via 2001:db8::2", function(c)
    return c.route.add { ns = A, family = 6, dst = "default", via = "2001:db8::2" } end },
  { "IPv4 default via 192.0.2.1 in B", function(c)
    return c.route.add { ns = B, family = 4, dst = "default", via = "192.0.2.1" } end },
  { "route 203.0.113.0/24 dev vb metric 7", function(c)
    return c.route.add { ns = B, dst = "203.0.113.0/24", dev = "vb", metric = 7 } end },
  { "route via an unreachable gateway", function(c)
    return c.route.add { ns = B, dst = "10.0.0.0/8", via = "10.9.9.9" } end },
  { "IPv4 default again", function(c)
    return c.route.add { ns = B, family = 4, dst = "default", via = "192.0.2.1" } end },
  { "ip_forward in A", function(c) return c.sysctl.set(A, "net.ipv4.ip_forward", 1) end },
  { "IPv6 forwarding in A", function(c) return c.sysctl.set(A, "net.ipv6.conf.all.forwarding", "1") end },
  { "rp_filter of vb (slash form)", function(c) return c.sysctl.set(B, "net/ipv4/conf/vb/rp_filter", 2) end },
  { "wg W1 born in A, living in W", function(c)
    return c.wg.create { name = W1, birth_ns = A, ns = W, backend = "userspace" } end },
  { "wg W1: key, port, two peers", function(c)
    return c.wg.set { ns = W, name = W1, private_key = key, listen_port = PORT, peers = {
      { public_key = P1, endpoint = "192.0.2.2:51830", persistent_keepalive = 25, allowed_ips = { "10.10.1.0/24" } },
      { public_key = P2, allowed_ips = { "10.10.2.0/24", "fd10::/64" } },
    } } end },
  { "W1: a peer with a misspelt field", function(c)
    return c.wg.set { ns = W, name = W1, peers = { { public_key = P2, allowed_ip = { "10.10.9.0/24" } } } } end },
  { "W1 up", function(c) return c.link.set { ns = W, name = W1, up = true } end },
  { "10.10.0.1/24 on W1", function(c) return c.addr.add { ns = W, dev = W1, addr = "10.10.0.1/24" } end },
  { "route 10.10.0.0/16 dev W1", function(c) return c.route.add { ns = W, dst = "10.10.0.0/16", dev = W1 } end },
  { "W1: P1 again, two allowed IPs, no replace (one is P2's)", function(c)
    return c.wg.set { ns = W, name = W1, peers = {
      { public_key = P1, allowed_ips = { "10.10.3.0/24", "10.10.2.0/24" } } } } end },
  { "W1: P1's endpoint only", function(c)
    return c.wg.set { ns = W, name = W1, peers = { { public_key = P1, endpoint = "[2001:db8::2]:51831" } } } end },
  { "W1: remove P2", function(c)
    return c.wg.set { ns = W, name = W1, peers = { { public_key = P2, remove = true } } } end },
  { "W1: P1's allowed IPs replaced", function(c)
    return c.wg.set { ns = W, name = W1, peers = {
      { public_key = P1, replace_allowed_ips = true, allowed_ips = { "10.10.4.0/24" } } } } end },
  { "wg W2 born in A too, living in B", function(c)
    return c.wg.create { name = W2, birth_ns = A, ns = B, backend = "userspace" } end },
  { "W2 wants W1's port: one UDP socket namespace", function(c)
    return c.wg.set { ns = B, name = W2, listen_port = PORT } end },
  { "wg W3 born and living in B", function(c)
    return c.wg.create { name = W3, birth_ns = B, ns = B, backend = "userspace" } end },
  { "W3 takes the same port: another socket namespace", function(c)
    return c.wg.set { ns = B, name = W3, listen_port = PORT } end },
  { "a second W3", function(c)
    return c.wg.create { name = W3, birth_ns = W, ns = W, backend = "userspace" } end },
  -- Addresses the kernel treats apart.
  { "10.7.7.7/32 on vb: no route", function(c) return c.addr.add { ns = B, dev = "vb", addr = "10.7.7.7/32" } end },
  { "198.18.0.1/24 on vb", function(c) return c.addr.add { ns = B, dev = "vb", addr = "198.18.0.1/24" } end },
  { "198.18.0.2/24 on vb: a secondary", function(c)
    return c.addr.add { ns = B, dev = "vb", addr = "198.18.0.2/24" } end },
  { "198.18.0.1/23 on vb: another prefix length", function(c)
    return c.addr.add { ns = B, dev = "vb", addr = "198.18.0.1/23" } end },
  { "delete 198.18.0.1/24: its secondary goes too", function(c)
    return c.addr.delete { ns = B, dev = "vb", addr = "198.18.0.1/24" } end },
  { "delete it again", function(c) return c.addr.delete { ns = B, dev = "vb", addr = "198.18.0.1/24" } end },
  { "route via a link-local gateway, no dev", function(c)
    return c.route.add { ns = B, dst = "2001:db8:8::/64", via = "fe80::1" } end },
  { "route via a link-local gateway on vb", function(c)
    return c.route.add { ns = B, dst = "2001:db8:8::/64", via = "fe80::1", dev = "vb" } end },
  { "IPv6 off on vb", function(c) return c.sysctl.set(B, "net.ipv6.conf.vb.disable_ipv6", 1) end },
  { "IPv6 on again on vb: only the link-local comes back", function(c)
    return c.sysctl.set(B, "net.ipv6.conf.vb.disable_ipv6", 0) end },
  { "lo@A down: ::1 goes, 127.0.0.1 stays", function(c) return c.link.set { ns = A, name = "lo", up = false } end },
  { "macvlan mv0@W on vb@B", function(c)
    return c.link.macvlan { ns = W, name = "mv0", parent = "vb", parent_ns = B } end },
  { "mv0 up", function(c) return c.link.set { ns = W, name = "mv0", up = true } end },
  { "veth m1/m2 in B", function(c) return c.link.veth { ns = B, name = "m1", peer = "m2" } end },
  { "m1 up", function(c) return c.link.set { ns = B, name = "m1", up = true } end },
  { "198.51.100.1/24 on m1", function(c) return c.addr.add { ns = B, dev = "m1", addr = "198.51.100.1/24" } end },
  { "move m1 to W as m1w: down, no addresses", function(c)
    return c.link.set { ns = B, name = "m1", netns = W, rename = "m1w" } end },
  { "move br0: a bridge stays", function(c) return c.link.set { ns = A, name = "br0", netns = W } end },
  { "br0 down", function(c) return c.link.set { ns = A, name = "br0", up = false } end },
  { "delete va (vb goes with it)", function(c) return c.link.delete { ns = A, name = "va" } end },
  { "delete wg W3", function(c) return c.wg.delete { ns = B, name = W3 } end },
  { "delete namespace A (W1's and W2's daemons end)", function(c) return c.netns.delete(A) end },
  { "delete wg W1, gone already", function(c) return c.wg.delete { ns = W, name = W1 } end },
  { "delete namespace B", function(c) return c.netns.delete(B) end },
  { "delete namespace W", function(c) return c.netns.delete(W) end },
}

-- A call's answer: "ok", the error name (the texts are the kernel's and
-- differ), for wg.create the backend (pids differ), or what it raised
-- (the bindings' words, which the fake repeats). The position a raise
-- starts with goes: a C function called in tail position (as the steps
-- call) keeps its caller's frame and line, a Lua one (the fake) does not.
local function answer(ok, res, _, ename)
  if not ok then return "raised " .. tostring(res):gsub("^[^%s:]+:%d+: ", "") end
  if res == nil then return tostring(ename) end
  if type(res) == "table" then return "backend " .. tostring(res.backend) end
  return res == true and "ok" or tostring(res)
end

local SYSCTLS = { "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding",
  "net.ipv6.conf.br0.forwarding", "net.ipv6.conf.default.accept_dad", "net.ipv4.conf.vb.rp_filter" }

-- What CORE shows now, as sorted lines.
local function snapshot(core)
  local lines = {}
  local function add(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
  local function read(what, fn, ...)
    local ok, v, e, ename = pcall(fn, ...)
    if not ok then add("%s raised %s", what, tostring(v)) return nil end
    if v == nil then add("%s: %s", what, tostring(ename)) end
    return v
  end
  local function s(v) return v == nil and "-" or tag(tostring(v)) end

  for _, name in ipairs(read("netns.list", core.netns.list) or {}) do
    if testns.owns(name) then add("netns %s", tag(name)) end
  end
  for _, ns in ipairs({ A, B, W }) do
    if core.netns.exists(ns) then
      local t = tag(ns)
      -- ifindex and MAC: the kernel's numbering.
      for _, l in ipairs(read(t .. " link.dump", core.link.dump, ns) or {}) do
        add("%s link %s kind=%s up=%s master=%s mtu=%s", t, s(l.name), s(l.kind), s(l.up), s(l.master), s(l.mtu))
      end
      for _, a in ipairs(read(t .. " addr.dump", core.addr.dump, ns) or {}) do
        -- A link-local address is made from a random MAC (or at random,
        -- for a TUN): that there is one in fe80::/64 is what counts.
        -- tentative: DAD's timing.
        local addr = a.addr
        if a.scope == "link" and a.family == 6 and addr:match("^fe80:") and addr:match("/64$") then
          addr = "fe80::<link-local>/64"
        end
        add("%s addr %s %s family=%s scope=%s", t, s(a.dev), addr, s(a.family), s(a.scope))
      end
      for _, r in ipairs(read(t .. " route.dump", core.route.dump, ns) or {}) do
        add("%s route %s %s via=%s dev=%s protocol=%s scope=%s metric=%s table=%s", t, s(r.family), s(r.dst),
          s(r.via), s(r.dev), s(r.protocol), s(r.scope), s(r.metric), s(r.table))
      end
      for _, k in ipairs(SYSCTLS) do
        local v = read(t .. " sysctl " .. k, core.sysctl.get, ns, k)
        if v then add("%s sysctl %s = %s", t, k, v) end
      end
      -- The processes in it: the wireguard-go daemons born there (their
      -- pids are the system's).
      local pids = read(t .. " netns.pids", core.netns.pids, ns)
      if pids then add("%s processes %d", t, #pids) end
    end
  end
  local homes = { [W1] = { W, A }, [W2] = { B, A }, [W3] = { B, B } }
  for _, name in ipairs({ W1, W2, W3 }) do
    local t, ns, birth = tag(name), homes[name][1], homes[name][2]
    add("%s serving=%s", t, tostring(core.wg.pid(name) ~= nil))
    if core.netns.exists(birth) then
      local strays = read(t .. " strays", core.wg.strays, { birth_ns = birth, name = name })
      if strays then add("%s strays in %s: %d", t, tag(birth), #strays) end
    end
    if core.netns.exists(ns) then
      local ok, dev, _, ename = pcall(core.wg.get, { ns = ns, name = name })
      if not ok then
        add("%s get raised %s", t, tostring(dev))
      elseif not dev then
        -- Gone: ENOENT without a kernel WireGuard (this machine's, and
        -- the fake's), ENODEV with one.
        add("%s get: %s", t, (ename == "ENOENT" or ename == "ENODEV") and "absent" or tostring(ename))
      else
        -- Until a port is set, wireguard-go binds one at random.
        local port = dev.listen_port
        if port ~= PORT and port ~= 0 then port = "ephemeral" end
        add("%s backend=%s listen_port=%s fwmark=%s public_key=%s", t, s(dev.backend), s(port), s(dev.fwmark),
          s(dev.public_key))
        -- Handshake times and byte counters are the network's (wireguard-go
        -- sends handshake initiations to P1's endpoint by itself).
        for _, p in ipairs(dev.peers or {}) do
          local aips = {}
          for i, a in ipairs(p.allowed_ips or {}) do aips[i] = a end
          table.sort(aips)
          add("%s peer %s endpoint=%s keepalive=%s psk=%s allowed_ips=%s", t, s(p.public_key), s(p.endpoint),
            s(p.persistent_keepalive), s(p.has_preshared_key), table.concat(aips, ","))
        end
      end
    end
  end
  -- Dump order is the kernel's (and wireguard-go's map order for peers).
  table.sort(lines)
  return lines
end

-- Lines only in REAL ("- ") or only in FAKE ("+ "); empty when equal.
local function difference(real_lines, fake_lines)
  local count = {}
  for _, l in ipairs(real_lines) do count[l] = (count[l] or 0) + 1 end
  for _, l in ipairs(fake_lines) do count[l] = (count[l] or 0) - 1 end
  local out = {}
  for _, l in ipairs(real_lines) do
    if count[l] > 0 then out[#out + 1] = "- real only: " .. l; count[l] = count[l] - 1 end
  end
  for _, l in ipairs(fake_lines) do
    if count[l] < 0 then out[#out + 1] = "+ fake only: " .. l; count[l] = count[l] + 1 end
  end
  return out
end

local function sleep(s) os.execute("sleep " .. s) end

local function cleanup()
  local homes = { [W1] = W, [W2] = B, [W3] = B }
  for name, ns in pairs(homes) do
    if real.netns.exists(ns) then real.wg.delete { ns = ns, name = name } end
  end
  if real.netns.exists(W) then real.wg.delete { ns = W, name = W3 } end
  -- Their processes (the daemons born there) end with them.
  local ok, why = testns.cleanup()
  -- A daemon killed with its namespace leaves its API socket behind.
  for name in pairs(homes) do
    if not real.wg.pid(name) then os.remove("/run/wireguard/" .. name .. ".sock") end
  end
  return ok, why
end

describe("the fake core and the real one", function()
  teardown(function() cleanup() end)

  it("read back the same after every step of one sequence", function()
    finally(function() assert(cleanup()) end)
    local fake = fake_core.new().core
    for i, step in ipairs(steps) do
      local text, call = step[1], step[2]
      local want = answer(pcall(call, real))
      local got = answer(pcall(call, fake))
      assert.equal(want, got, string.format("step %d (%s): the real core answered %s, the fake %s",
        i, text, want, got))
      -- The kernel applies carrier changes (link-local addresses, a
      -- bridge's carrier) from its link watch, and a namespace's devices
      -- go once its last process has: asynchronously. The fake is
      -- synchronous; the real side gets up to 5 s to settle.
      local fake_lines = snapshot(fake)
      local diff
      for _ = 1, 50 do
        diff = difference(snapshot(real), fake_lines)
        if #diff == 0 then break end
        sleep(0.1)
      end
      assert.same({}, diff, string.format("step %d (%s): the fake reads back differently:\n%s",
        i, text, table.concat(diff, "\n")))
    end
    assert.same({}, testns.leftovers())
  end)
end)
