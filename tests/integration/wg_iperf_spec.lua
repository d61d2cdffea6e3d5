-- iperf3 through a tunnel built by Zero-Mesh (userspace backend), between
-- namespaces of this run (topology in tests/fixtures/wg/helpers.lua): real
-- throughput, and WireGuard's byte counters moving with it. The sender's
-- tx may exceed the receiver's rx (UDP drops under load make TCP resend),
-- but every byte iperf3 received came through the tunnel, with WireGuard's
-- and TCP/IP's headers on top.
local core = require "zmesh.core"
local h = dofile((os.getenv("ZMESH_ROOT") or ".") .. "/tests/fixtures/wg/helpers.lua")

local SECONDS = 2

local function counters(ns, name)
  local dev = assert(core.wg.get { ns = ns, name = name })
  assert.equal(1, #dev.peers)
  return dev.peers[1]
end

describe("iperf3 through a Zero-Mesh tunnel (userspace)", function()
  local t

  before_each(function()
    t = h.zmesh_tunnel(h.topology("ip"))
  end)

  after_each(h.assert_clean)

  -- SENDER → RECEIVER (wg ends): iperf3's bytes against the counters.
  local function check(r, s0, s1, r0, r1)
    assert.is_true(r.bps > 0, "throughput " .. r.bps)
    assert.is_true(r.bytes > 0 and r.sent >= r.bytes, ("sent %d, received %d"):format(r.sent, r.bytes))
    local rx = r1.rx_bytes - r0.rx_bytes
    local tx = s1.tx_bytes - s0.tx_bytes
    -- The receiver's wg got at least the payload (plus headers), but not
    -- wildly more: the flow is the tunnel's only traffic.
    assert.is_true(rx >= r.bytes, ("wg rx %d < iperf3 received %d"):format(rx, r.bytes))
    assert.is_true(rx <= r.bytes * 1.5 + 1e6, ("wg rx %d for iperf3's %d"):format(rx, r.bytes))
    -- The sender's wg sent at least what the receiver's got.
    assert.is_true(tx >= rx, ("wg tx %d < peer's rx %d"):format(tx, rx))
    -- The other way, only TCP's acknowledgements: few bytes, but some.
    local back = s1.rx_bytes - s0.rx_bytes
    assert.is_true(back > 0 and back < rx / 4, ("reverse %d for %d"):format(back, rx))
    io.stderr:write(("\n[iperf3: %.0f Mbit/s, %d bytes received, wg rx %d, tx %d, %d retransmits]\n")
      :format(r.bps / 1e6, r.bytes, rx, tx, r.retransmits or -1))
  end

  it("carries a TCP flow from the client's NR to the server's", function()
    assert.equal(3, h.ping(t.WA, t.b).received) -- handshake done
    local a0, b0 = counters(t.WA, t.ia), counters(t.WB, t.ib)
    local r = h.iperf(t.WB, t.WA, t.b, SECONDS)
    -- The receiver read first: a packet sent between the two reads (the
    -- flow's last ACKs) is then in the sender's count only.
    local b1 = counters(t.WB, t.ib)
    check(r, a0, counters(t.WA, t.ia), b0, b1)
  end)

  it("carries a TCP flow back from the server (iperf3 -R)", function()
    assert.equal(3, h.ping(t.WA, t.b).received)
    local a0, b0 = counters(t.WA, t.ia), counters(t.WB, t.ib)
    local r = h.iperf(t.WB, t.WA, t.b, SECONDS, { reverse = true })
    local a1 = counters(t.WA, t.ia)
    check(r, b0, counters(t.WB, t.ib), a0, a1)
  end)
end)
