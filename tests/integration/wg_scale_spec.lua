-- 1000 peers through the userspace backend (wireguard-go over its API
-- socket): a set and get round trip that the real `wg showconf` agrees
-- with, and one-peer updates of a 1000-peer interface while a flow runs
-- through an unchanged peer: no packet lost, the link never down, the
-- flow's session untouched. Topology: tests/fixtures/wg/helpers.lua.
local core = require "zmesh.core"
local h = dofile((os.getenv("ZMESH_ROOT") or ".") .. "/tests/fixtures/wg/helpers.lua")

local N = 1000

local function sorted(list)
  local c = table.move(list, 1, #list, 1, {})
  table.sort(c)
  return c
end

-- Peers by public key; raises on a key listed twice.
local function by_key(peers)
  local out = {}
  for _, p in ipairs(peers) do
    assert(not out[p.public_key], "peer listed twice: " .. p.public_key)
    out[p.public_key] = p
  end
  return out
end

-- What a peer is configured with, in get's terms: comparable with same().
local function config_of(p)
  return { endpoint = p.endpoint, persistent_keepalive = p.persistent_keepalive or 0,
    allowed_ips = sorted(p.allowed_ips or {}), has_preshared_key = p.preshared_key ~= nil
      or p.has_preshared_key or false }
end

-- `wg showconf NAME` as {interface = {Key = value}, peers = {pub → config_of shape}}.
local function showconf(name)
  local text = h.sh("wg showconf " .. name)
  local conf, section = { interface = {}, peers = {} }, nil
  local peer
  for line in text:gmatch("[^\n]+") do
    local key, value = line:match("^(%w+) = (.+)$")
    if line == "[Interface]" then
      section = conf.interface
    elseif line == "[Peer]" then
      peer = { allowed_ips = {}, persistent_keepalive = 0, has_preshared_key = false }
      section = nil
    elseif key and section then
      section[key] = value
    elseif key == "PublicKey" then
      assert(not conf.peers[value], "peer listed twice by wg: " .. value)
      conf.peers[value] = peer
    elseif key == "AllowedIPs" then
      for ip in value:gmatch("[^, ]+") do peer.allowed_ips[#peer.allowed_ips + 1] = ip end
      peer.allowed_ips = sorted(peer.allowed_ips)
    elseif key == "Endpoint" then
      peer.endpoint = value
    elseif key == "PersistentKeepalive" then
      peer.persistent_keepalive = tonumber(value)
    elseif key == "PresharedKey" then
      peer.has_preshared_key = true
    end
  end
  return conf
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- `ip -n NS link show NAME`: its flags and operational state.
local function link_state(ns, name)
  local out = h.sh(("ip -n %s link show %s"):format(ns, name))
  return { flags = out:match("<([^>]*)>"), state = out:match(" state (%S+)") }
end

-- `ip monitor link` in NS, in the background, writing to a file:
-- :mark() changes lo's MTU in NS and returns every event line since the
-- last mark up to and including that change, so every event before it is
-- known to be read. The monitor subscribes some time after it starts, so
-- a change it missed is made again (with the other MTU), never waited on
-- for ever.
local function link_monitor(ns)
  local log = os.tmpname()
  local pid = h.sh(("ip -n %s monitor link >%s 2>&1 & echo $!"):format(ns, log))
  local m, returned = { pid = assert(math.tointeger(tonumber(pid)), pid), mtu = 65536 }, 0
  local function unread()
    local lines, n = {}, 0
    for line in io.lines(log) do
      n = n + 1
      if n > returned then lines[#lines + 1] = line end
    end
    return lines
  end
  function m:mark()
    for _ = 1, 10 do
      self.mtu = self.mtu == 65536 and 65000 or 65536
      h.sh(("ip -n %s link set lo mtu %d"):format(ns, self.mtu))
      local upto
      h.wait_for(1, function()
        upto = nil
        local lines = unread()
        for i, line in ipairs(lines) do
          if line:match("^%d+: lo: ") and line:find("mtu " .. self.mtu, 1, true) then
            upto = table.move(lines, 1, i, 1, {})
            return true
          end
        end
      end)
      if upto then
        returned = returned + #upto
        return upto
      end
    end
    error("ip monitor saw none of 10 MTU changes of lo: " .. table.concat(unread(), "\n"))
  end
  function m:close()
    if log then
      os.execute("kill " .. self.pid .. " 2>/dev/null")
      os.remove(log)
      log = nil
    end
  end
  return m
end

describe("1000 peers, userspace backend", function()
  after_each(h.assert_clean)

  it("set and get round trip exactly, and wg showconf agrees", function()
    local birth, ns = h.namespaces("sb", "sw")
    local name = h.ifname("sw")
    h.wg_create(name, birth, ns)
    local peers = h.filler_peers(N - 1)
    for i = 7, #peers, 7 do peers[i].preshared_key = core.key.generate() end
    -- One peer with many allowed IPs: long lines both ways.
    local many = {}
    for j = 1, 500 do many[j] = string.format("172.16.%d.%d/32", j // 256, j % 256) end
    peers[N] = { public_key = core.key.generate():public(), allowed_ips = many, endpoint = "192.0.2.99:1" }
    local key = core.key.generate()
    assert(core.wg.set { ns = ns, name = name, private_key = key, listen_port = 51830, fwmark = 0x51,
      replace_peers = true, peers = peers })

    local dev = assert(core.wg.get { ns = ns, name = name })
    assert.equal(key:public(), dev.public_key)
    assert.equal(51830, dev.listen_port)
    assert.equal(0x51, dev.fwmark)
    assert.equal(N, #dev.peers)
    local got, conf = by_key(dev.peers), showconf(name)
    assert.equal(N, count(conf.peers))
    for _, want in ipairs(peers) do
      local p = got[want.public_key]
      assert.is_table(p, "peer missing: " .. want.public_key)
      assert.same(config_of(want), config_of(p))
      assert.same(config_of(want), conf.peers[want.public_key])
      assert.equal(0, p.last_handshake)
      assert.equal(0, p.rx_bytes + p.tx_bytes)
    end
    assert.equal("51830", conf.interface.ListenPort)
    assert.equal("0x51", conf.interface.FwMark)
    assert.equal(key:export(), conf.interface.PrivateKey)
  end)

  it("adds and removes one peer at a time while a flow runs through another: no loss, link up, session kept", function()
    local fillers = h.filler_peers(N - 1)
    local t = h.zmesh_tunnel(h.topology("sc"), fillers)
    local live = t.kb:public()
    assert.equal(3, h.ping(t.WA, t.b, "-c 3 -i 0.05 -W 2").received) -- session up
    local before = by_key(assert(core.wg.get { ns = t.WA, name = t.ia }).peers)
    local b_before = assert(core.wg.get { ns = t.WB, name = t.ib }).peers[1]
    assert.equal(N, count(before))
    assert.is_true(before[live].last_handshake > 0)
    local link_before = link_state(t.WA, t.ia)
    assert.matches("UP", link_before.flags)
    assert.matches("LOWER_UP", link_before.flags)
    local monitor = link_monitor(t.WA)
    finally(function() monitor:close() end) -- before its namespace goes
    monitor:mark()

    -- 2000 echo requests, 1 ms apart; -w: wait for every reply (10 s at
    -- most) rather than give the last ones up after two round trips.
    local COUNT = 2000
    local flow = assert(io.popen(("ip netns exec %s ping -q -i 0.001 -c %d -w 10 %s 2>&1"):format(t.WA, COUNT, t.b)))
    local function live_rx() return assert(core.wg.get { ns = t.WB, name = t.ib }).peers[1].rx_bytes end
    local rx0 = b_before.rx_bytes
    assert.is_true(h.wait_for(3, function() return live_rx() > rx0 + 100 * 32 end), "the flow did not start")
    local rx_start = live_rx()

    -- Ten rounds: add a new peer, then remove an old one, each alone.
    local added, removed = {}, {}
    for round = 1, 10 do
      local new = { public_key = core.key.generate():public(), endpoint = "198.51.100.250:" .. (40000 + round),
        allowed_ips = { "10.201.0." .. round .. "/32" }, persistent_keepalive = 25 }
      assert(core.wg.set { ns = t.WA, name = t.ia, peers = { new } })
      added[new.public_key] = new
      local old = fillers[round * 97].public_key
      assert(core.wg.set { ns = t.WA, name = t.ia, peers = { { public_key = old, remove = true } } })
      removed[old] = true
      h.sleep(0.05)
    end
    local rx_updated = live_rx()

    local out = flow:read("a")
    flow:close()
    local events = monitor:mark()
    monitor:close()

    -- Not one packet lost.
    local sent, got = out:match("(%d+) packets transmitted, (%d+) received")
    assert.equal(COUNT, tonumber(sent), out)
    assert.equal(COUNT, tonumber(got), out)
    assert.matches(" 0%% packet loss", out)
    -- The updates fell inside the flow: it ran before and after them.
    assert.is_true(rx_updated > rx_start, "no traffic during the updates")
    assert.is_true(live_rx() > rx_updated, "the flow had ended before the updates")
    -- The link never changed: no event about it, same flags and state.
    for _, line in ipairs(events) do
      assert.is_nil(line:find(t.ia, 1, true), "link event during the updates: " .. line)
    end
    assert.same(link_before, link_state(t.WA, t.ia))
    assert.is_true(core.link.get(t.WA, t.ia).up)
    -- The flow's session is the same (no new handshake on either side),
    -- every other peer as it was, the added ones there, the removed gone.
    local after = by_key(assert(core.wg.get { ns = t.WA, name = t.ia }).peers)
    local b_after = assert(core.wg.get { ns = t.WB, name = t.ib }).peers[1]
    assert.equal(before[live].last_handshake, after[live].last_handshake)
    assert.equal(before[live].last_handshake_nsec, after[live].last_handshake_nsec)
    assert.equal(b_before.last_handshake, b_after.last_handshake)
    assert.equal(b_before.last_handshake_nsec, b_after.last_handshake_nsec)
    assert.is_true(after[live].tx_bytes >= before[live].tx_bytes + COUNT * 128)
    assert.equal(N, count(after))
    for key, p in pairs(before) do
      if removed[key] then
        assert.is_nil(after[key], "removed peer still there")
      elseif key ~= live then
        assert.same(config_of(p), config_of(after[key]))
      end
    end
    for key, want in pairs(added) do assert.same(config_of(want), config_of(after[key])) end
  end)
end)
