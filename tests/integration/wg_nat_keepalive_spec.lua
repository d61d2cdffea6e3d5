-- A hidden peer behind a NAT router whose UDP conntrack entries live only
-- TIMEOUT seconds (set in the router's namespace alone), and a public peer
-- that has no endpoint for it: the public side reaches the hidden peer
-- only through the router's mapping, which the hidden peer's packets make
-- and refresh. After the timeout the public side still reaches a hidden
-- peer with a persistent keepalive shorter than the timeout, and does not
-- reach one without (its mapping expired) until that peer sends again.
--
--   H  (hidden ndmz) eth0 10.0.0.2/24 -- lan 10.0.0.1/24  R (NAT router)
--                                         wan 203.0.113.1/24 -- eth0 203.0.113.2/24  P (public ndmz)
--   HW (hidden NR)  wg 10.9.1.1  ============ tunnel ============  wg 10.9.0.1  PW (public NR)
--
-- R masquerades out of wan and forwards nothing new inbound; P has no
-- route to 10.0.0.0/24. Userspace backend (wireguard-go).
local core = require "zmesh.core"
local h = dofile((os.getenv("ZMESH_ROOT") or ".") .. "/tests/fixtures/wg/helpers.lua")

local TIMEOUT = 2   -- seconds a UDP mapping lives in R without packets
local KEEPALIVE = 1 -- the hidden peer's persistent keepalive, when it has one
local RANGE = "10.9.0.0/16"

local NAT = [[
table ip ztnat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
]]

-- The topology above; the hidden peer's keepalive is KEEPALIVE or none.
local function build(keepalive)
  local t = {}
  t.H, t.HW, t.R, t.P, t.PW = h.namespaces("nh", "nhw", "nr", "np", "npw")
  t.ih, t.ip = h.ifname("nh"), h.ifname("np")
  h.wire(t.H, "10.0.0.2/24", t.R, "10.0.0.1/24", "eth0", "lan")
  h.wire(t.R, "203.0.113.1/24", t.P, "203.0.113.2/24", "wan", "eth0")
  assert(core.route.add { ns = t.H, dst = "0.0.0.0/0", via = "10.0.0.1" })
  assert(core.sysctl.set(t.R, "net.ipv4.ip_forward", 1))
  assert(h.nft(t.R, NAT), "nft -f - refused the NAT ruleset")
  for _, key in ipairs({ "net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream" }) do
    assert(core.sysctl.set(t.R, key, TIMEOUT))
    assert.equal(tostring(TIMEOUT), core.sysctl.get(t.R, key))
  end

  t.kh, t.kp = core.key.generate(), core.key.generate()
  h.wg_create(t.ih, t.H, t.HW)
  h.wg_create(t.ip, t.P, t.PW)
  -- The public side first, listening before the hidden side is set: a
  -- keepalive starts the handshake at once (wireguard-go does not wait for
  -- the link to be up), and a first initiation lost is retried only 5 s on.
  -- It lists the hidden peer without an endpoint.
  assert(core.wg.set { ns = t.PW, name = t.ip, private_key = t.kp, listen_port = 51820,
    peers = { { public_key = t.kh:public(), allowed_ips = { "10.9.1.0/24" } } } })
  h.wg_up(t.PW, t.ip, "10.9.0.1/32", RANGE)
  h.wait_listening(t.P, "udp", 51820)
  assert(core.wg.set { ns = t.HW, name = t.ih, private_key = t.kh, listen_port = 51820,
    peers = { { public_key = t.kp:public(), endpoint = "203.0.113.2:51820", allowed_ips = { RANGE },
      persistent_keepalive = keepalive } } })
  h.wg_up(t.HW, t.ih, "10.9.1.1/32", RANGE)
  return t
end

-- The public side's view of the hidden peer.
local function hidden_peer(t)
  return assert(core.wg.get { ns = t.PW, name = t.ip }).peers[1]
end

-- R's UDP conntrack entries towards P's WireGuard port.
local function mappings(t)
  local out = assert(h.exec(t.R, "cat /proc/net/nf_conntrack"))
  local n = 0
  for line in out:gmatch("[^\n]+") do
    if line:find(" udp ", 1, true) and line:find("dport=51820", 1, true) and line:find("src=10.0.0.2", 1, true) then
      n = n + 1
    end
  end
  return n
end

-- The hidden peer comes out; then the public side answers through the
-- fresh mapping. Returns the time of the last packet through R.
local function establish(t)
  local r = h.ping(t.HW, "10.9.0.1", "-c 2 -i 0.2 -W 2")
  assert.equal(2, r.received, r.out)
  -- P learnt the hidden peer's endpoint: R's public address, never 10.0.0.2.
  assert.matches("^203%.0%.113%.1:%d+$", hidden_peer(t).endpoint)
  r = h.ping(t.PW, "10.9.1.1", "-c 2 -i 0.2 -W 2")
  assert.equal(2, r.received, r.out)
  assert.equal(1, mappings(t))
  return h.now()
end

-- Build with KEEPALIVE, establish, then wait until the mapping has been
-- idle past the timeout (had nothing refreshed it). Returns the topology
-- and the bytes the public side received from the hidden peer meanwhile.
local function after_timeout(keepalive)
  local t = build(keepalive)
  local last = establish(t)
  local rx0 = hidden_peer(t).rx_bytes
  h.sleep(math.max(0, last + TIMEOUT + 1 - h.now()))
  return t, hidden_peer(t).rx_bytes - rx0
end

local function hidden_keepalive(t)
  return assert(core.wg.get { ns = t.HW, name = t.ih }).peers[1].persistent_keepalive
end

describe("a hidden peer behind a NAT with short UDP conntrack timeouts", function()
  after_each(h.assert_clean)

  it("stays reachable from the public side after the timeout with a persistent keepalive", function()
    local t, rx = after_timeout(KEEPALIVE)
    assert.equal(KEEPALIVE, hidden_keepalive(t))
    -- Keepalives kept the mapping: they arrived, 32 bytes each, nothing else.
    assert.is_true(rx >= 2 * 32 and rx % 32 == 0, "keepalive bytes received: " .. rx)
    assert.equal(1, mappings(t))
    local r = h.ping(t.PW, "10.9.1.1", "-c 3 -i 0.2 -W 1")
    assert.equal(3, r.received, r.out)
  end)

  it("is unreachable from the public side after the timeout without one, until it sends again", function()
    local t, rx = after_timeout(nil)
    assert.equal(0, hidden_keepalive(t))
    -- Nothing came from the hidden peer, and R forgot its mapping.
    assert.equal(0, rx)
    assert.equal(0, mappings(t))
    local r = h.ping(t.PW, "10.9.1.1", "-c 3 -i 0.2 -W 1")
    assert.equal(0, r.received, r.out)
    -- The tunnel itself is fine: once the hidden peer sends, the public
    -- side reaches it again through a new mapping.
    assert.equal(1, h.ping(t.HW, "10.9.0.1", "-c 1 -W 2").received)
    r = h.ping(t.PW, "10.9.1.1", "-c 2 -i 0.2 -W 2")
    assert.equal(2, r.received, r.out)
  end)
end)
