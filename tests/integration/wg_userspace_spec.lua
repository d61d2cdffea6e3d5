-- The userspace WireGuard backend (wireguard-go) between namespaces:
-- traffic, exact counters, handshakes, interop with the real `wg`, and
-- nothing left behind.
local core = require "zmesh.core"
local testns = require "testns"

local function wg_dump(iface)
  local out, ok = testns.sh("wg show " .. iface .. " dump")
  assert(ok, out)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

describe("wg (userspace)", function()
  local A, B, WA, WB, ia, ib
  local ka, kb

  local function tunnel(endpoint_b, endpoint_a)
    assert(core.wg.set { ns = WA, name = ia, private_key = ka, listen_port = 51820,
      peers = { { public_key = kb:public(), endpoint = endpoint_b, allowed_ips = { "10.9.2.0/24" } } } })
    assert(core.wg.set { ns = WB, name = ib, private_key = kb, listen_port = 51821,
      peers = { { public_key = ka:public(), endpoint = endpoint_a, allowed_ips = { "10.9.1.0/24" } } } })
    assert(core.addr.add { ns = WA, dev = ia, addr = "10.9.1.1/24" })
    assert(core.addr.add { ns = WB, dev = ib, addr = "10.9.2.1/24" })
    assert(core.link.set { ns = WA, name = ia, up = true })
    assert(core.link.set { ns = WB, name = ib, up = true })
    assert(core.route.add { ns = WA, dst = "10.9.2.0/24", dev = ia })
    assert(core.route.add { ns = WB, dst = "10.9.1.0/24", dev = ib })
  end

  before_each(function()
    A, B, WA, WB = testns.name("ua"), testns.name("ub"), testns.name("uwa"), testns.name("uwb")
    ia, ib = "zt" .. testns.run_id .. "a", "zt" .. testns.run_id .. "b"
    for _, n in ipairs({ A, B, WA, WB }) do assert(core.netns.create(n)) end
    -- The "Internet" between the two UDP sockets: a veth, v4 and v6.
    assert(core.link.veth { ns = A, name = "eth0", peer = "eth0", peer_ns = B })
    assert(core.addr.add { ns = A, dev = "eth0", addr = "192.0.2.1/24" })
    assert(core.addr.add { ns = B, dev = "eth0", addr = "192.0.2.2/24" })
    assert(core.addr.add { ns = A, dev = "eth0", addr = "2001:db8::1/64", nodad = true })
    assert(core.addr.add { ns = B, dev = "eth0", addr = "2001:db8::2/64", nodad = true })
    assert(core.link.set { ns = A, name = "eth0", up = true })
    assert(core.link.set { ns = B, name = "eth0", up = true })
    ka, kb = core.key.generate(), core.key.generate()
    local ra = assert(core.wg.create { name = ia, birth_ns = A, ns = WA, backend = "userspace" })
    local rb = assert(core.wg.create { name = ib, birth_ns = B, ns = WB, backend = "userspace" })
    assert.equal("userspace", ra.backend)
    assert.is_number(rb.pid)
  end)

  after_each(function()
    core.wg.delete { ns = WA, name = ia }
    core.wg.delete { ns = WB, name = ib }
    assert(testns.cleanup())
  end)

  it("is born in one namespace and lives in another", function()
    local tun = assert(core.link.get(WA, ia))
    assert.equal("tun", tun.kind)
    assert.equal(1420, tun.mtu)
    -- Made there, never moved: where it was born, only the placeholder
    -- wireguard-go looks its TUN up by: down, held by the daemon alone.
    local placeholder = assert(core.link.get(A, ia))
    assert.equal("tun", placeholder.kind)
    assert.is_false(placeholder.up)
    -- Its UDP socket stays where it was born.
    tunnel("192.0.2.2:51821", "192.0.2.1:51820")
    local ss = testns.exec(A, "ss -uln")
    assert.matches(":51820", ss, 1, true)
    assert.not_matches(":51820", testns.exec(WA, "ss -uln"), 1, true)
  end)

  it("carries traffic over IPv4 with exact counters and a fresh handshake", function()
    tunnel("192.0.2.2:51821", "192.0.2.1:51820")
    -- Two seconds of pings: wireguard-go polls for its link coming up.
    local out, ok = testns.exec(WA, "ping -c 5 -i 0.5 -W 2 10.9.2.1")
    assert.is_true(ok, out)
    local a = core.wg.get { ns = WA, name = ia }
    local b = core.wg.get { ns = WB, name = ib }
    assert.equal(ka:public(), a.public_key)
    assert.equal(51820, a.listen_port)
    assert.equal("192.0.2.2:51821", a.peers[1].endpoint)
    assert.same({ "10.9.2.0/24" }, a.peers[1].allowed_ips)
    -- What one side sent, the other received: exactly.
    assert.is_true(a.peers[1].tx_bytes > 0)
    assert.equal(a.peers[1].tx_bytes, b.peers[1].rx_bytes)
    assert.equal(a.peers[1].rx_bytes, b.peers[1].tx_bytes)
    local age = os.time() - a.peers[1].last_handshake
    assert.is_true(age >= 0 and age < 10, "handshake age " .. age)
    -- The real tool agrees with our reading.
    local dump = wg_dump(ia)
    local fields = {}
    for f in dump[2]:gmatch("[^\t]+") do fields[#fields + 1] = f end
    assert.equal(kb:public(), fields[1])
    assert.equal(tostring(a.peers[1].rx_bytes), fields[6])
    assert.equal(tostring(a.peers[1].tx_bytes), fields[7])
  end)

  it("gives the daemon's UDP sockets large buffers (Debian's wireguard-go leaves the default)", function()
    tunnel("192.0.2.2:51821", "192.0.2.1:51820")
    -- The daemon binds once it notices its link up (it polls each second);
    -- a read after that raises what it bound.
    local function buffers()
      assert(core.wg.get { ns = WA, name = ia })
      local out = testns.exec(A, "ss -ulmn 'sport = :51820'")
      local sizes = {}
      for rb in out:gmatch("rb(%d+)") do sizes[#sizes + 1] = tonumber(rb) end
      return sizes
    end
    local deadline, sizes = os.time() + 5, {}
    repeat
      sizes = buffers()
      local all = #sizes > 0
      for _, v in ipairs(sizes) do all = all and v >= 7 * 1024 * 1024 end
      if all then break end
      os.execute("sleep 0.2")
    until os.time() > deadline
    assert.is_true(#sizes > 0, "no UDP socket on port 51820 in " .. A)
    for _, v in ipairs(sizes) do assert.is_true(v >= 7 * 1024 * 1024, "receive buffer " .. v) end
  end)

  it("mutes the daemon's link listener in its birth namespace, and the tunnel still comes up", function()
    tunnel("192.0.2.2:51821", "192.0.2.1:51820")
    local pid = assert(core.wg.pid(ia))
    local mine = {}
    for inode in testns.sh("ls -l /proc/" .. pid .. "/fd"):gmatch("socket:%[(%d+)%]") do mine[inode] = true end
    -- /proc/net/netlink: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    local route_sockets = 0
    for line in testns.exec(A, "cat /proc/net/netlink"):gmatch("[^\n]+") do
      local f = {}
      for w in line:gmatch("%S+") do f[#f + 1] = w end
      if f[2] == "0" and mine[f[10]] then
        route_sockets = route_sockets + 1
        local groups = tonumber(f[4], 16)
        -- RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR: the NR's
        -- neighbours' events, never its own interface's.
        assert.equal(0, groups & 0x111, string.format("socket %s still hears groups %08x", f[10], groups))
      end
    end
    assert.is_true(route_sockets > 0, "the daemon has no rtnetlink socket in " .. A)
    local out, ok = testns.exec(WA, "ping -c 5 -i 0.5 -W 2 10.9.2.1")
    assert.is_true(ok, out)
  end)

  it("carries traffic over IPv6 endpoints", function()
    tunnel("[2001:db8::2]:51821", "[2001:db8::1]:51820")
    local out, ok = testns.exec(WB, "ping -c 5 -i 0.5 -W 2 10.9.1.1")
    assert.is_true(ok, out)
    assert.equal("[2001:db8::1]:51820", core.wg.get({ ns = WB, name = ib }).peers[1].endpoint)
  end)

  it("reads back what `wg set` wrote, and `wg showconf` reads what we wrote", function()
    tunnel("192.0.2.2:51821", "192.0.2.1:51820")
    local conf = testns.sh("wg showconf " .. ia)
    assert.matches("ListenPort = 51820", conf, 1, true)
    assert.matches("PublicKey = " .. kb:public(), conf, 1, true)
    assert.matches("AllowedIPs = 10.9.2.0/24", conf, 1, true)
    assert.matches("Endpoint = 192.0.2.2:51821", conf, 1, true)
    assert.matches("PrivateKey = " .. ka:export(), conf, 1, true)
    local kc = core.key.generate()
    local _, ok = testns.sh("wg set " .. ia .. " listen-port 51999 peer " .. kc:public()
      .. " allowed-ips 10.9.3.0/24,10.9.4.0/24 persistent-keepalive 25 endpoint 192.0.2.7:1234")
    assert.is_true(ok)
    local dev = core.wg.get { ns = WA, name = ia }
    assert.equal(51999, dev.listen_port)
    local peer
    for _, p in ipairs(dev.peers) do if p.public_key == kc:public() then peer = p end end
    assert.equal(25, peer.persistent_keepalive)
    assert.equal("192.0.2.7:1234", peer.endpoint)
    table.sort(peer.allowed_ips)
    assert.same({ "10.9.3.0/24", "10.9.4.0/24" }, peer.allowed_ips)
  end)

  it("removes one peer and replaces allowed IPs without touching the others", function()
    tunnel("192.0.2.2:51821", "192.0.2.1:51820")
    local kc = core.key.generate()
    assert(core.wg.set { ns = WA, name = ia, peers = { { public_key = kc:public(), allowed_ips = { "10.9.3.0/24" } } } })
    assert.equal(2, #core.wg.get({ ns = WA, name = ia }).peers)
    assert(core.wg.set { ns = WA, name = ia, peers = { { public_key = kc:public(),
      allowed_ips = { "10.9.5.0/24" }, replace_allowed_ips = true } } })
    local dev = core.wg.get { ns = WA, name = ia }
    for _, p in ipairs(dev.peers) do
      if p.public_key == kc:public() then assert.same({ "10.9.5.0/24" }, p.allowed_ips) end
      if p.public_key == kb:public() then assert.same({ "10.9.2.0/24" }, p.allowed_ips) end
    end
    assert(core.wg.set { ns = WA, name = ia, peers = { { public_key = kc:public(), remove = true } } })
    dev = core.wg.get { ns = WA, name = ia }
    assert.equal(1, #dev.peers)
    assert.equal(kb:public(), dev.peers[1].public_key)
  end)

  it("refuses a second daemon for the same name", function()
    local ok, err, ename = core.wg.create { name = ia, birth_ns = A, ns = WA, backend = "userspace" }
    assert.is_nil(ok)
    assert.equal("EEXIST", ename)
    assert.matches("already", err, 1, true)
  end)

  it("stops the daemon on delete and leaves no process, link or socket", function()
    local pid = assert(core.wg.pid(ia))
    assert.is_true(core.wg.delete { ns = WA, name = ia })
    assert.is_nil(core.link.get(WA, ia))
    -- The placeholder went with the daemon.
    assert.is_nil(core.link.get(A, ia))
    assert.is_nil(core.wg.pid(ia))
    local state = testns.sh("cat /proc/" .. pid .. "/stat 2>/dev/null | awk '{print $3}'")
    assert.is_true(state == "" or state == "Z", "daemon " .. pid .. " still runs")
    local _, exists = testns.sh("test -e /run/wireguard/" .. ia .. ".sock")
    assert.is_false(exists)
    local ok, _, ename = core.wg.get { ns = WA, name = ia }
    assert.is_nil(ok)
    assert.is_string(ename)
  end)

  it("lets a wireguard-go of an unknown release make its own TUN, and moves it", function()
    -- One that names no release, one that does not answer --version.
    local answers = { 'echo "wireguard-go vdev-build"; exit 0', "sleep 30" }
    for i, answer in ipairs(answers) do
      local dir = testns.sh("mktemp -d")
      local wrapper = dir .. "/wireguard-go"
      local f = assert(io.open(wrapper, "w"))
      f:write('#!/bin/sh\n[ "$1" = --version ] && { ' .. answer .. '; }\n'
        .. 'exec /usr/bin/wireguard-go "$@"\n')
      f:close()
      testns.must("chmod 755 " .. wrapper)
      local name = "zt" .. testns.run_id .. "o" .. i
      local ok, err = core.wg.create { name = name, birth_ns = A, ns = WA, backend = "userspace",
        program = wrapper, mtu = 1380 }
      testns.sh("rm -rf " .. dir)
      assert.truthy(ok, err)
      local tun = core.link.get(WA, name)
      local left = core.link.get(A, name)
      core.wg.delete { ns = WA, name = name }
      assert.truthy(tun, "no interface in " .. WA)
      assert.equal(1380, tun.mtu)
      assert.is_nil(left, "the TUN or a placeholder stayed in " .. A)
    end
  end)

  it("says when the daemon cannot start", function()
    local ok, err, ename = core.wg.create { name = "zt" .. testns.run_id .. "x", birth_ns = A, ns = WA,
      backend = "userspace", program = "/nonexistent/wireguard-go" }
    assert.is_nil(ok)
    assert.equal("ENOENT", ename)
    assert.matches("cannot run /nonexistent/wireguard-go", err, 1, true)
  end)
end)
