-- The kernel WireGuard backend against the real kernel module, inside the
-- test VM (tests/vm/run.sh tests/vm/wg_kernel.lua; the host-side spec is
-- tests/integration/wg_kernel_spec.lua).
--
-- Two "nodes", each an ndmz namespace with an uplink on a shared veth
-- (documentation addresses 192.0.2.0/24, 2001:db8::/64), and an NR
-- namespace each. Each wg interface is born in its node's ndmz and moved
-- into the NR: its UDP socket stays in the ndmz, the only place that can
-- reach the other node, so a working tunnel proves the birth/move.
package.path = "tests/vm/?.lua;tests/lib/?.lua;" .. package.path
local core = require "zmesh.core"
local t = require "vmcheck"
local check, expect, eq, nsx = t.check, t.expect, t.eq, t.nsx

local D1, D2, A, B = "ndmz1", "ndmz2", "nrA", "nrB"

-- Deterministic public keys for the big peer set: any 32 bytes will do.
local b64 = require("fake_keys").b64encode
local function fake_pub(i) return b64(string.format("zmesh-vm-test-peer-%013d", i)) end

local function ok_or_die(what, v, err)
  if v == nil then error(what .. ": " .. tostring(err), 2) end
  return v
end

local function find_peer(dev, pub)
  for _, p in ipairs(dev.peers) do
    if p.public_key == pub then return p end
  end
end

local function sorted(list)
  local c = table.move(list, 1, #list, 1, {})
  table.sort(c)
  return table.concat(c, ",")
end

-- `wg showconf` as { interface = {k=v}, peers = { {k=v}, … } }.
local function showconf(ns, dev)
  local conf, cur = { interface = {}, peers = {} }, nil
  for l in (nsx(ns, "wg showconf " .. dev) .. "\n"):gmatch("([^\n]*)\n") do
    if l == "[Interface]" then cur = conf.interface
    elseif l == "[Peer]" then cur = {}; conf.peers[#conf.peers + 1] = cur
    else
      local k, v = l:match("^(%w+)%s*=%s*(.-)%s*$")
      if k and cur then cur[k] = cur[k] and (cur[k] .. ", " .. v) or v end
    end
  end
  return conf
end

-- `wg show DEV dump` peer lines by public key.
local function dump(ns, dev)
  local out, peers = nsx(ns, "wg show " .. dev .. " dump"), {}
  local first = true
  for l in (out .. "\n"):gmatch("([^\n]*)\n") do
    if first then first = false
    elseif l ~= "" then
      local f = {}
      for x in l:gmatch("[^\t]+") do f[#f + 1] = x end
      peers[f[1]] = { psk = f[2], endpoint = f[3], allowed = f[4],
        handshake = tonumber(f[5]), rx = tonumber(f[6]), tx = tonumber(f[7]),
        keepalive = f[8] }
    end
  end
  return peers
end

local function ping(ns, addr, count)
  return nsx(ns, string.format("ping -c %d -i 0.2 -W 2 %s", count or 3, addr))
end

-- ------------------------------------------------------------------------
-- Topology

local kA, kB = core.key.generate(), core.key.generate()
local psk = core.key.generate_psk()
local pubA, pubB = kA:public(), kB:public()

check("kernel WireGuard answers", function()
  eq(core.wg.kernel_available(), true, "kernel_available()")
end)

check("topology: namespaces, uplinks", function()
  for _, ns in ipairs({ D1, D2, A, B }) do
    ok_or_die("netns " .. ns, core.netns.create(ns))
    ok_or_die("lo up", core.link.set{ ns = ns, name = "lo", up = true })
  end
  ok_or_die("veth", core.link.veth{ ns = D1, name = "up1", peer = "up2", peer_ns = D2 })
  ok_or_die("addr", core.addr.add{ ns = D1, dev = "up1", addr = "192.0.2.1/24" })
  ok_or_die("addr", core.addr.add{ ns = D2, dev = "up2", addr = "192.0.2.2/24" })
  ok_or_die("addr", core.addr.add{ ns = D1, dev = "up1", addr = "2001:db8::1/64", nodad = true })
  ok_or_die("addr", core.addr.add{ ns = D2, dev = "up2", addr = "2001:db8::2/64", nodad = true })
  ok_or_die("up", core.link.set{ ns = D1, name = "up1", up = true })
  ok_or_die("up", core.link.set{ ns = D2, name = "up2", up = true })
  ping(D1, "192.0.2.2", 1)
end)

check("create: born in the ndmz, moved to the NR", function()
  local r = ok_or_die("create wgA", core.wg.create{ name = "wgA", birth_ns = D1, ns = A,
    backend = "kernel", mtu = 1420 })
  eq(r.backend, "kernel", "backend")
  eq(r.pid, nil, "pid")
  r = ok_or_die("create wgB", core.wg.create{ name = "wgB", birth_ns = D2, ns = B, backend = "auto" })
  eq(r.backend, "kernel", "auto picks")
  local l = ok_or_die("link wgA", core.link.get(A, "wgA"))
  eq(l.kind, "wireguard", "kind")
  eq(l.mtu, 1420, "mtu")
  eq(core.link.get(D1, "wgA"), nil, "wgA left in the ndmz")
  expect(nsx(A, "ip -d link show wgA"):find("wireguard", 1, true), "ip -d link does not say wireguard")
end)

check("set: keys, port, psk, endpoint, allowed IPs", function()
  ok_or_die("set A", core.wg.set{ ns = A, name = "wgA", private_key = kA, listen_port = 51820,
    fwmark = 0, replace_peers = true,
    peers = { { public_key = pubB, preshared_key = psk, endpoint = "192.0.2.2:51821",
      allowed_ips = { "10.0.0.2/32", "fd00::2/128" } } } })
  ok_or_die("set B", core.wg.set{ ns = B, name = "wgB", private_key = kB, listen_port = 51821,
    replace_peers = true,
    peers = { { public_key = pubA, preshared_key = psk, endpoint = "192.0.2.1:51820",
      allowed_ips = { "10.0.0.1/32", "fd00::1/128" } } } })
  for _, s in ipairs({ { A, "wgA", "10.0.0.1/24", "fd00::1/64" }, { B, "wgB", "10.0.0.2/24", "fd00::2/64" } }) do
    ok_or_die("addr", core.addr.add{ ns = s[1], dev = s[2], addr = s[3] })
    ok_or_die("addr", core.addr.add{ ns = s[1], dev = s[2], addr = s[4], nodad = true })
    ok_or_die("up", core.link.set{ ns = s[1], name = s[2], up = true })
  end
end)

check("wg showconf reads what zmesh set", function()
  local c = showconf(A, "wgA")
  eq(c.interface.PrivateKey, kA:export(), "PrivateKey")
  eq(c.interface.ListenPort, "51820", "ListenPort")
  eq(#c.peers, 1, "peers")
  eq(c.peers[1].PublicKey, pubB, "PublicKey")
  eq(c.peers[1].PresharedKey, psk:export(), "PresharedKey")
  eq(c.peers[1].Endpoint, "192.0.2.2:51821", "Endpoint")
  eq(c.peers[1].AllowedIPs, "10.0.0.2/32, fd00::2/128", "AllowedIPs")
end)

check("tunnel over IPv4 endpoints: ping", function()
  ping(A, "10.0.0.2", 3)
  ping(B, "fd00::1", 2)
end)

local before_update
check("get: handshake, exact counters equal wg show dump", function()
  local now = os.time()
  local dev = ok_or_die("get", core.wg.get{ ns = A, name = "wgA" })
  local dB = ok_or_die("get", core.wg.get{ ns = B, name = "wgB" })
  local d = dump(A, "wgA")[pubB]
  eq(dev.name, "wgA", "name")
  eq(dev.backend, "kernel", "backend")
  eq(dev.public_key, pubA, "public_key")
  eq(dev.listen_port, 51820, "listen_port")
  eq(#dev.peers, 1, "peers")
  local p = dev.peers[1]
  eq(p.public_key, pubB, "peer key")
  eq(p.has_preshared_key, true, "has_preshared_key")
  eq(p.endpoint, "192.0.2.2:51821", "endpoint")
  eq(sorted(p.allowed_ips), "10.0.0.2/32,fd00::2/128", "allowed_ips")
  expect(p.last_handshake > 0, "no handshake")
  expect(now - p.last_handshake >= 0 and now - p.last_handshake < 30,
    "handshake age %d s", now - p.last_handshake)
  eq(p.last_handshake, d.handshake, "last_handshake vs wg show dump")
  eq(p.rx_bytes, d.rx, "rx_bytes vs wg show dump")
  eq(p.tx_bytes, d.tx, "tx_bytes vs wg show dump")
  expect(p.tx_bytes > 0 and p.rx_bytes > 0, "no traffic counted")
  -- Nothing is lost between two namespaces: what A sent, B received.
  eq(dB.peers[1].rx_bytes, p.tx_bytes, "B's rx vs A's tx")
  eq(dB.peers[1].tx_bytes, p.rx_bytes, "B's tx vs A's rx")
  t.note("A->B %d bytes, B->A %d bytes, handshake age %d s", p.tx_bytes, p.rx_bytes,
    now - p.last_handshake)
  before_update = p
end)

check("one-peer update keeps the running session", function()
  local extra = core.key.generate():public()
  ok_or_die("add", core.wg.set{ ns = A, name = "wgA",
    peers = { { public_key = extra, allowed_ips = { "10.0.9.0/24" } } } })
  ping(A, "10.0.0.2", 2)
  local dev = ok_or_die("get", core.wg.get{ ns = A, name = "wgA" })
  eq(#dev.peers, 2, "peers")
  local p = find_peer(dev, pubB)
  eq(p.last_handshake, before_update.last_handshake, "B's handshake time (a new handshake = session lost)")
  expect(p.tx_bytes > before_update.tx_bytes, "no new traffic through B")
  eq(sorted(p.allowed_ips), "10.0.0.2/32,fd00::2/128", "B's allowed IPs")
  ok_or_die("remove", core.wg.set{ ns = A, name = "wgA", peers = { { public_key = extra, remove = true } } })
  eq(#ok_or_die("get", core.wg.get{ ns = A, name = "wgA" }).peers, 1, "peers after remove")
end)

check("tunnel over IPv6 endpoints", function()
  ok_or_die("set A", core.wg.set{ ns = A, name = "wgA",
    peers = { { public_key = pubB, endpoint = "[2001:db8::2]:51821", update_only = true } } })
  ok_or_die("set B", core.wg.set{ ns = B, name = "wgB",
    peers = { { public_key = pubA, endpoint = "[2001:db8::1]:51820", update_only = true } } })
  local a0 = find_peer(ok_or_die("get", core.wg.get{ ns = A, name = "wgA" }), pubB)
  eq(a0.endpoint, "[2001:db8::2]:51821", "endpoint")
  ping(A, "10.0.0.2", 2)
  ping(A, "fd00::2", 2)
  local a1 = find_peer(ok_or_die("get", core.wg.get{ ns = A, name = "wgA" }), pubB)
  local b1 = find_peer(ok_or_die("get", core.wg.get{ ns = B, name = "wgB" }), pubA)
  eq(b1.endpoint, "[2001:db8::1]:51820", "B sees A at")
  expect(a1.tx_bytes > a0.tx_bytes, "no traffic over the IPv6 endpoint")
  eq(b1.rx_bytes, a1.tx_bytes, "B's rx vs A's tx")
  -- update_only never creates a peer.
  ok_or_die("set", core.wg.set{ ns = A, name = "wgA",
    peers = { { public_key = core.key.generate():public(), update_only = true, allowed_ips = { "10.7.0.0/16" } } } })
  eq(#ok_or_die("get", core.wg.get{ ns = A, name = "wgA" }).peers, 1, "update_only added a peer")
end)

check("wg set changes, zmesh reads them", function()
  local kN, k2 = core.key.generate(), core.key.generate()
  local psk2 = core.key.generate_psk()
  local f = assert(io.open("/tmp/psk", "w")); f:write(psk2:export(), "\n"); f:close()
  f = assert(io.open("/tmp/key", "w")); f:write(k2:export(), "\n"); f:close()
  nsx(A, "wg set wgA fwmark 0x42 peer " .. kN:public() ..
    " allowed-ips 10.9.0.0/16,fd09::/64 endpoint 192.0.2.9:1234 persistent-keepalive 25" ..
    " preshared-key /tmp/psk")
  local dev = ok_or_die("get", core.wg.get{ ns = A, name = "wgA" })
  eq(dev.fwmark, 0x42, "fwmark")
  local p = find_peer(dev, kN:public())
  expect(p, "peer set by wg is missing")
  eq(p.endpoint, "192.0.2.9:1234", "endpoint")
  eq(p.persistent_keepalive, 25, "persistent_keepalive")
  eq(p.has_preshared_key, true, "has_preshared_key")
  eq(sorted(p.allowed_ips), "10.9.0.0/16,fd09::/64", "allowed_ips")
  eq(find_peer(dev, pubB).has_preshared_key, true, "B's psk")
  -- The private key set by wg shows as its public key.
  nsx(A, "wg set wgA private-key /tmp/key listen-port 51822")
  dev = ok_or_die("get", core.wg.get{ ns = A, name = "wgA" })
  eq(dev.public_key, k2:public(), "public_key after wg set private-key")
  eq(dev.listen_port, 51822, "listen_port")
  -- And back with zmesh: key, port, fwmark 0, psk cleared on N, N removed.
  ok_or_die("set", core.wg.set{ ns = A, name = "wgA", private_key = kA, listen_port = 51820, fwmark = 0,
    peers = { { public_key = kN:public(), preshared_key = false, persistent_keepalive = 0,
      replace_allowed_ips = true, allowed_ips = { "10.8.0.0/16" } } } })
  local c = showconf(A, "wgA")
  eq(c.interface.PrivateKey, kA:export(), "PrivateKey")
  eq(c.interface.FwMark, nil, "FwMark")
  for _, cp in ipairs(c.peers) do
    if cp.PublicKey == kN:public() then
      eq(cp.PresharedKey, nil, "N's PresharedKey")
      eq(cp.PersistentKeepalive, nil, "N's PersistentKeepalive")
      eq(cp.AllowedIPs, "10.8.0.0/16", "N's AllowedIPs")
    end
  end
  ok_or_die("remove", core.wg.set{ ns = A, name = "wgA", peers = { { public_key = kN:public(), remove = true } } })
  eq(nsx(A, "wg show wgA peers"), pubB, "wg show peers")
  os.remove("/tmp/psk"); os.remove("/tmp/key")
  ping(A, "10.0.0.2", 1)
end)

-- ------------------------------------------------------------------------
-- 1000 peers, one with 2000 allowed IPs: both directions span many
-- netlink messages, and the big peer is split inside its allowed IPs.

local N, BIG = 1000, 2000
local big = {}
for i = 1, N do
  local p = { public_key = fake_pub(i),
    allowed_ips = { string.format("10.%d.%d.0/24", 100 + i // 256, i % 256),
      string.format("fd00:%x::/64", i) } }
  if i % 2 == 0 then p.endpoint = string.format("192.0.2.%d:%d", 10 + i % 200, 20000 + i) end
  if i % 3 == 0 then p.endpoint = string.format("[2001:db8::%x]:%d", i, 30000 + i) end
  if i % 5 == 0 then p.persistent_keepalive = 25 end
  big[i] = p
end
do
  local ips = {}
  for j = 1, BIG do ips[j] = string.format("172.%d.%d.%d/32", 16 + j // 65536, (j // 256) % 256, j % 256) end
  -- 2000 allowed IPs take about 56 KB: several SET messages, two dump parts.
  big[N + 1] = { public_key = fake_pub(0), allowed_ips = ips, endpoint = "192.0.2.250:1" }
end

local function same_peer(got, want)
  eq(got.endpoint, want.endpoint, "endpoint of " .. want.public_key)
  eq(got.persistent_keepalive, want.persistent_keepalive or 0, "keepalive of " .. want.public_key)
  eq(sorted(got.allowed_ips), sorted(want.allowed_ips), "allowed IPs of " .. want.public_key)
end

check("1000 peers: set and get round trip", function()
  ok_or_die("create", core.wg.create{ name = "wgC", birth_ns = D1, ns = A, backend = "kernel" })
  local t0 = t.now_ms()
  ok_or_die("set", core.wg.set{ ns = A, name = "wgC", private_key = core.key.generate(),
    listen_port = 51900, replace_peers = true, peers = big })
  local t1 = t.now_ms()
  local dev = ok_or_die("get", core.wg.get{ ns = A, name = "wgC" })
  local t2 = t.now_ms()
  t.note("set %d peers + %d allowed IPs: %d ms; get: %d ms (emulated CPU)", N + 1, 2 * N + BIG, t1 - t0, t2 - t1)
  eq(#dev.peers, N + 1, "peers read back")
  local byk = {}
  for _, p in ipairs(dev.peers) do
    expect(not byk[p.public_key], "peer %s read twice (split peer not merged)", p.public_key)
    byk[p.public_key] = p
  end
  for _, want in ipairs(big) do
    local got = byk[want.public_key]
    expect(got, "peer %s missing", want.public_key)
    same_peer(got, want)
  end
  eq(#byk[fake_pub(0)].allowed_ips, BIG, "allowed IPs of the big peer")
end)

check("1000 peers: wg agrees", function()
  local c = showconf(A, "wgC")
  eq(#c.peers, N + 1, "peers in wg showconf")
  local n = tonumber(nsx(A, "sh -c 'wg show wgC allowed-ips | grep " .. fake_pub(0) .. " | tr \" \" \"\\n\" | grep -c /'"))
  eq(n, BIG, "allowed IPs of the big peer in wg show")
end)

local function ip_list(second, n)
  local ips = {}
  for j = 1, n do ips[j] = string.format("172.%d.%d.%d/32", second, (j // 256) % 256, j % 256) end
  return ips
end

-- The big peer's list spans several messages: REPLACE_ALLOWEDIPS goes with
-- the first part only, or the last part would replace the earlier ones.
check("split peer: replace_allowed_ips keeps every part", function()
  local new = ip_list(40, BIG)
  ok_or_die("set", core.wg.set{ ns = A, name = "wgC", peers = {
    { public_key = fake_pub(0), replace_allowed_ips = true, allowed_ips = new } } })
  local p = find_peer(ok_or_die("get", core.wg.get{ ns = A, name = "wgC" }), fake_pub(0))
  eq(#p.allowed_ips, BIG, "allowed IPs")
  eq(sorted(p.allowed_ips), sorted(new), "allowed IPs")
  eq(p.endpoint, "192.0.2.250:1", "endpoint")
  big[N + 1].allowed_ips = new
end)

-- update_only goes with every part, or a later part would create the peer.
check("split peer: update_only never creates a partial peer", function()
  ok_or_die("set", core.wg.set{ ns = A, name = "wgC", peers = {
    { public_key = fake_pub(N + 7), update_only = true, allowed_ips = ip_list(50, BIG) } } })
  local dev = ok_or_die("get", core.wg.get{ ns = A, name = "wgC" })
  eq(find_peer(dev, fake_pub(N + 7)), nil, "peer created by update_only")
  eq(#dev.peers, N + 1, "peers")
end)

check("1000 peers: one removed, one added, the rest untouched", function()
  local newkey = fake_pub(N + 1)
  ok_or_die("set", core.wg.set{ ns = A, name = "wgC", peers = {
    { public_key = fake_pub(500), remove = true },
    { public_key = newkey, allowed_ips = { "10.250.0.0/24" } } } })
  local dev = ok_or_die("get", core.wg.get{ ns = A, name = "wgC" })
  eq(#dev.peers, N + 1, "peers")
  local byk = {}
  for _, p in ipairs(dev.peers) do byk[p.public_key] = p end
  eq(byk[fake_pub(500)], nil, "removed peer")
  expect(byk[newkey], "added peer missing")
  for i, want in ipairs(big) do
    if i ~= 500 then same_peer(byk[want.public_key], want) end
  end
end)

check("1000 peers: replace_peers with an empty list clears", function()
  ok_or_die("set", core.wg.set{ ns = A, name = "wgC", replace_peers = true, peers = {} })
  eq(#ok_or_die("get", core.wg.get{ ns = A, name = "wgC" }).peers, 0, "peers")
  ok_or_die("delete", core.wg.delete{ ns = A, name = "wgC" })
  eq(core.link.get(A, "wgC"), nil, "link after delete")
end)

-- ------------------------------------------------------------------------
-- Bad input: clear errors, nothing changed.

local conf_before = nsx(A, "wg showconf wgA")
local function unchanged()
  eq(nsx(A, "wg showconf wgA"), conf_before, "wg showconf wgA after a refused change")
end

check("bad input: malformed public key", function()
  t.raises(function() core.wg.set{ ns = A, name = "wgA", peers = { { public_key = "not-a-key" } } } end,
    "public_key", "not-a-key")
  unchanged()
end)

check("bad input: malformed endpoints", function()
  for _, ep in ipairs({ "192.0.2.1:99999", "192.0.2.1", "example.com:51820", "2001:db8::1:51820", "[2001:db8::1]:0" }) do
    t.raises(function() core.wg.set{ ns = A, name = "wgA",
      peers = { { public_key = pubB, endpoint = ep } } } end, "endpoint", ep)
  end
  unchanged()
end)

check("bad input: malformed allowed IPs", function()
  for _, ip in ipairs({ "10.0.0.0/33", "fd00::/129", "10.0.0.300/32", "nonsense" }) do
    t.raises(function() core.wg.set{ ns = A, name = "wgA",
      peers = { { public_key = pubB, allowed_ips = { "10.1.0.0/16", ip } } } } end, "allowed_ips", ip)
  end
  unchanged()
end)

check("bad input: port out of range, keepalive out of range", function()
  t.raises(function() core.wg.set{ ns = A, name = "wgA", listen_port = 70000 } end, "listen_port")
  t.raises(function() core.wg.set{ ns = A, name = "wgA", listen_port = -1 } end, "listen_port")
  t.raises(function() core.wg.set{ ns = A, name = "wgA",
    peers = { { public_key = pubB, persistent_keepalive = 65536 } } } end, "persistent_keepalive")
  unchanged()
end)

check("bad input: a bad peer after a good one changes nothing", function()
  t.raises(function() core.wg.set{ ns = A, name = "wgA", peers = {
    { public_key = core.key.generate():public(), allowed_ips = { "10.5.0.0/16" } },
    { public_key = pubB, allowed_ips = { "10.6.0.0/33" } } } } end, "peers[2]", "allowed_ips")
  unchanged()
end)

check("errors: no such device, not a WireGuard device", function()
  t.fails("ENODEV", { "nope0", "no such interface" }, core.wg.set{ ns = A, name = "nope0", listen_port = 1 })
  t.fails("ENODEV", { "nope0" }, core.wg.get{ ns = A, name = "nope0" })
  t.fails("EOPNOTSUPP", { "not a WireGuard interface" }, core.wg.get{ ns = A, name = "lo" })
  t.fails("EOPNOTSUPP", { "not a WireGuard interface" }, core.wg.set{ ns = A, name = "lo", listen_port = 1 })
end)

check("errors: create twice, bad names", function()
  t.fails("EEXIST", { "wgA" }, core.wg.create{ name = "wgA", birth_ns = D1, ns = A, backend = "kernel" })
  eq(core.link.get(D1, "wgA"), nil, "a failed create left a link in the ndmz")
  t.raises(function() core.wg.create{ name = "a-name-far-too-long", birth_ns = D1, ns = A, backend = "kernel" } end, "name")
  t.fails("ENOENT", { "nsnope" }, core.wg.create{ name = "wgX", birth_ns = D1, ns = "nsnope", backend = "kernel" })
end)

check("errors: listen port in use in the birth namespace", function()
  ok_or_die("create", core.wg.create{ name = "wgE", birth_ns = D1, ns = A, backend = "kernel" })
  ok_or_die("set", core.wg.set{ ns = A, name = "wgE", listen_port = 51830 })
  ok_or_die("up", core.link.set{ ns = A, name = "wgE", up = true })
  t.fails("EADDRINUSE", { "wgA" }, core.wg.set{ ns = A, name = "wgA", listen_port = 51830 })
  unchanged()
  ok_or_die("delete", core.wg.delete{ ns = A, name = "wgE" })
end)

check("tunnel still up after all that", function()
  ping(A, "10.0.0.2", 1)
end)

check("teardown", function()
  ok_or_die("delete wgA", core.wg.delete{ ns = A, name = "wgA" })
  for _, ns in ipairs({ A, B, D1, D2 }) do ok_or_die("netns delete", core.netns.delete(ns)) end
  eq(#(core.netns.list() or {}), 0, "namespaces left")
end)

os.exit(t.done())
