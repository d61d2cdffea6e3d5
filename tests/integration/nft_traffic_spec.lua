-- The default NR firewall proved by traffic. Three namespaces of this run:
--
--   ct (container)          nr (network resource)          net (Internet)
--   eth0 192.0.2.2/25 ---- c1 192.0.2.1/25                 server 203.0.113.10
--                          public 198.51.100.2/24 ---- up 198.51.100.1/24
--
-- The user network's range is 192.0.2.0/24, the NR's subnet its lower
-- half. The Internet has a route to that subnet through the NR: the
-- worst case, a neighbour on the uplink that tries to reach containers.
-- Before the firewall everything gets through (so the checks below can
-- fail); with it the container reaches out, masqueraded, replies come
-- back, and nothing new comes in, to the NR or through it.
local core = require "zmesh.core"
local firewall = require "zmesh.firewall"
local testns = require "testns"
local h = dofile((os.getenv("ZMESH_ROOT") or ".") .. "/tests/fixtures/nft/helpers.lua")

local SERVER, NR_UP, CT = "203.0.113.10", "198.51.100.2", "192.0.2.2"
local PORT, FLOOD_PORT = 8080, 9999

local t = {}

local function build()
  t.net, t.nr, t.ct = testns.name("fw-net"), testns.name("fw-nr"), testns.name("fw-ct")
  for _, ns in ipairs({ t.net, t.nr, t.ct }) do
    assert(core.netns.create(ns))
    h.sh("ip -n " .. ns .. " link set lo up")
  end
  -- Links are made inside the namespaces, never in the machine's own.
  h.sh(("ip -n %s link add public type veth peer name up netns %s"):format(t.nr, t.net))
  h.sh(("ip -n %s link add eth0 type veth peer name c1 netns %s"):format(t.ct, t.nr))
  h.sh(("ip -n %s addr add 198.51.100.1/24 dev up"):format(t.net))
  h.sh(("ip -n %s addr add %s/32 dev lo"):format(t.net, SERVER))
  h.sh(("ip -n %s link set dev up up"):format(t.net))
  h.sh(("ip -n %s route add 192.0.2.0/25 via %s"):format(t.net, NR_UP))
  h.sh(("ip -n %s addr add %s/24 dev public"):format(t.nr, NR_UP))
  h.sh(("ip -n %s addr add 192.0.2.1/25 dev c1"):format(t.nr))
  h.sh(("ip -n %s link set public up"):format(t.nr))
  h.sh(("ip -n %s link set c1 up"):format(t.nr))
  h.sh(("ip -n %s route add default via 198.51.100.1"):format(t.nr))
  h.sh(("ip netns exec %s sysctl -qw net.ipv4.ip_forward=1"):format(t.nr))
  h.sh(("ip -n %s addr add %s/25 dev eth0"):format(t.ct, CT))
  h.sh(("ip -n %s link set eth0 up"):format(t.ct))
  h.sh(("ip -n %s route add default via 192.0.2.1"):format(t.ct))
  -- A server everywhere: the Internet's, the NR's own, the container's.
  for _, ns in ipairs({ t.net, t.nr, t.ct }) do
    h.sh(("ip netns exec %s python3 %s serve %d >/dev/null 2>&1 &"):format(ns, h.peer, PORT))
  end
  -- Wait until the three listen (a cold interpreter may take seconds).
  for _ = 1, 300 do
    local n = 0
    for _, ns in ipairs({ t.net, t.nr, t.ct }) do
      local out = testns.exec(ns, "ss -Hltn sport = :" .. PORT)
      if out:find(tostring(PORT), 1, true) then n = n + 1 end
    end
    if n == 3 then return end
    h.sleep(0.1)
  end
  error("servers did not start")
end

-- What the server at HOST:PORT saw as our address, or nil and why.
local function probe(from, proto, host)
  local out, ok = testns.exec(from, ("python3 %s probe %s %s %d 1"):format(h.peer, proto, host, PORT))
  if ok then return out end
  return nil, out
end

local function ping(from, host)
  local _, ok = testns.exec(from, "ping -c 1 -W 1 " .. host)
  return ok
end

local NR_CTX = { uplink = "public", range = "192.0.2.0/24", wg = "w-test", bridge = "c1" }

-- The container counts UDP arriving on FLOOD_PORT in a table of its own.
local function count_in_container()
  assert.is_true(core.nft.apply(t.ct, { table = "count", chains = {
    { name = "in", type = "filter", hook = "input", rules = {
      { match = { udp_dport = FLOOD_PORT }, counter = true, comment = "flood" } } } } }))
end

local function container_count()
  local d = assert(core.nft.dump(t.ct, { table = "count" }))
  return d.live.chains[1].rules[1].packets
end

local describe_root = h.is_root() and describe or pending

describe_root("the NR firewall, by traffic", function()
  setup(build)

  teardown(function()
    local ok, err = testns.cleanup()
    assert(ok, err)
  end)

  it("without it, the Internet reaches the NR and the container (the checks can fail)", function()
    assert.is_nil(core.nft.dump(t.nr))
    assert.equals(CT, probe(t.ct, "tcp", SERVER)) -- not masqueraded
    assert.equals("198.51.100.1", probe(t.net, "tcp", CT))
    assert.equals("198.51.100.1", probe(t.net, "udp", CT))
    assert.equals("198.51.100.1", probe(t.net, "tcp", NR_UP))
    assert.equals("198.51.100.1", probe(t.net, "udp", NR_UP))
    assert.is_true(ping(t.net, CT))
    assert.is_true(ping(t.net, NR_UP))
  end)

  describe("with the default policy", function()
    setup(function()
      assert.is_true(firewall.apply(t.nr, assert(firewall.from_policy("nr", NR_CTX))))
    end)

    it("lets the container reach the Internet, masqueraded, and the replies back", function()
      assert.equals(NR_UP, probe(t.ct, "tcp", SERVER))
      assert.equals(NR_UP, probe(t.ct, "udp", SERVER))
      assert.is_true(ping(t.ct, SERVER))
      assert.is_true(ping(t.nr, SERVER)) -- the NR's own traffic too
      local c = firewall.counters(assert(core.nft.dump(t.nr)))
      assert.is_true(c.masquerade.packets >= 3)
    end)

    it("lets nothing new in: TCP, UDP and ping to the NR and to the container fail", function()
      local before = firewall.counters(assert(core.nft.dump(t.nr)))
      for _, target in ipairs({ NR_UP, CT }) do
        local out, err = probe(t.net, "tcp", target)
        assert.is_nil(out, "tcp to " .. target)
        assert.equals("TIMEOUT", err)
        out, err = probe(t.net, "udp", target)
        assert.is_nil(out, "udp to " .. target)
        assert.equals("TIMEOUT", err)
        assert.is_false(ping(t.net, target), "ping to " .. target)
      end
      -- And the diode counted what it stopped, per chain.
      local after = firewall.counters(assert(core.nft.dump(t.nr)))
      assert.is_true(after["input diode"].packets >= before["input diode"].packets + 3)
      assert.is_true(after["forward diode"].packets >= before["forward diode"].packets + 3)
    end)

    it("keeps the network's own range out of masquerade", function()
      -- A host of the range (another NR's half) reached through public
      -- must see the container's own address.
      h.sh(("ip -n %s addr add 192.0.2.200/32 dev lo"):format(t.net))
      h.sh(("ip -n %s route add 192.0.2.200/32 via 198.51.100.1"):format(t.nr))
      local saw = probe(t.ct, "tcp", "192.0.2.200")
      h.sh(("ip -n %s route del 192.0.2.200/32"):format(t.nr))
      h.sh(("ip -n %s addr del 192.0.2.200/32 dev lo"):format(t.net))
      assert.equals(CT, saw)
    end)
  end)

  it("lets none of a flood through while the table is replaced 100 times", function()
    local desc = assert(firewall.from_policy("nr", NR_CTX))
    assert.is_true(core.nft.delete(t.nr))
    count_in_container()
    -- Control: with no firewall the flood arrives, and is counted.
    h.sh(("ip netns exec %s python3 %s flood %s %d 0.3"):format(t.net, h.peer, CT, FLOOD_PORT))
    local open_count = container_count()
    assert.is_true(open_count > 100, "control flood arrived: " .. open_count)

    assert.is_true(core.nft.apply(t.nr, desc))
    count_in_container() -- counters back to zero
    local out = os.tmpname()
    local FLOOD_S = 4
    h.sh(("ip netns exec %s python3 %s flood %s %d %d > %s 2>&1 &"):format(
      t.net, h.peer, CT, FLOOD_PORT, FLOOD_S, out))
    h.sleep(0.5)
    local t0 = h.now()
    for i = 1, 100 do
      local ok, err = core.nft.apply(t.nr, desc)
      assert(ok, "replacement " .. i .. ": " .. tostring(err))
    end
    local spent = h.now() - t0
    -- The flood runs on past the replacements; wait for its report.
    local sent
    for _ = 1, 60 do
      local f = io.open(out)
      sent = f and tonumber(f:read("a"))
      if f then f:close() end
      if sent then break end
      h.sleep(0.1)
    end
    os.remove(out)
    assert.is_number(sent, "the flood reported")
    assert.is_true(sent > 10000, "flood size " .. sent)
    -- Zero through, and the last table alone dropped plenty of it.
    assert.equals(0, container_count())
    local c = firewall.counters(assert(core.nft.dump(t.nr)))
    assert.is_true(c["forward diode"].packets > 1000,
      "dropped by the last table: " .. c["forward diode"].packets)
    -- All 100 happened while the flood ran.
    assert.is_true(spent < FLOOD_S - 0.7, "100 replacements took " .. spent .. " s")
  end)

  it("keeps blocking when a replacement fails half-way", function()
    local desc = assert(firewall.from_policy("nr", NR_CTX))
    assert.is_true(core.nft.apply(t.nr, desc))
    count_in_container()
    local bad = assert(firewall.from_policy("nr", NR_CTX))
    -- The forward chain opened wide, then a chain the kernel refuses.
    bad.chains[2].rules = { { verdict = "accept" } }
    bad.chains[#bad.chains + 1] = { name = "bad", type = "nat", hook = "forward" }
    local ok, err = core.nft.apply(t.nr, bad)
    assert.is_nil(ok)
    assert.matches("chain 'bad'", err, 1, true)
    h.sh(("ip netns exec %s python3 %s flood %s %d 0.3"):format(t.net, h.peer, CT, FLOOD_PORT))
    assert.equals(0, container_count())
    assert.is_nil(probe(t.net, "tcp", CT))
  end)
end)
