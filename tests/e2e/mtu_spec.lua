-- MTU per path, in the simulated fleet: node n3's uplink has MTU 1400
-- (PPPoE-like: its NIC and the Internet's end of it). Its facts say so,
-- the network tool derives every NR's WireGuard MTU from the paths it
-- peers over (IPv4 overhead 60, IPv6 80), the container links and bridge
-- follow, and TCP SYNs are clamped in the NRs' forward paths: a 1 MB TCP
-- transfer between containers across the small link completes, and an
-- oversized ping with DF set gets "fragmentation needed" back from the
-- hop that cannot carry it instead of silence.
local json = require "zmesh.json"
local lan = require "zmesh.sim.lan"
local mesh = require "zmesh.sim.mesh"
local sim = require "zmesh.sim"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local MB = 1000000

local function say(...) io.stdout:write("\n# ", ...) io.stdout:flush() end

describe("MTU per path", function()
  local S, F, N, mtu = nil, nil, nil, {}

  local function link_mtu(id, ns, dev)
    return tonumber((S:exec(id, ns, "cat /sys/class/net/" .. dev .. "/mtu")))
  end

  setup(function()
    S = sim.new { prefix = "zt" .. testns.run_id .. "u-", bin = BIN, backend = "userspace" }
    F = mesh.build(S)
    -- n3's uplink shrinks to 1400 (the ndmz's macvlan follows its NIC).
    lan.mtu(S, "n3", 1400)
    N = F:network { name = "mtu", id = "mtu1", range = "10.4.0.0/16", range6 = "fd00:4::/48", tag = "m" }
    N:define({ "n1", "n2", "n3", "n4", "n5" })
    N:deploy()
    N:attach()
    for _, id in ipairs(N.members) do mtu[id] = N.configs[id].mtu end
    for _, id in ipairs(N.members) do
      S:exec(id, N.containers[id].netns, "sh -c " .. sim.q("python3 " .. sim.peer_py
        .. " sink 9000 >/dev/null 2>&1 &"))
    end
    sim.sh("sleep 0.5")
  end)

  teardown(function()
    if F then F:destroy() end
    if S then
      S:destroy()
      assert.same({}, S:leftovers())
    end
  end)

  it("derives each NR's WireGuard MTU from its paths, and sets links and bridge to it", function()
    local facts = json.decode(assert(io.open(F.dir .. "/facts-n3.json")):read("a"))
    assert.equal(1400, facts.mtu)
    -- Public NRs talk over IPv6: 1400 - 80 wherever n3 is a peer.
    for _, id in ipairs({ "n1", "n2", "n3" }) do assert.equal(1320, mtu[id], id) end
    for _, id in ipairs(N.members) do
      assert.equal(mtu[id], link_mtu(id, "n-mtu1", "w-mtu1"), id .. " wireguard")
      assert.equal(mtu[id], link_mtu(id, "n-mtu1", "b-mtu1"), id .. " bridge")
      assert.equal(mtu[id], link_mtu(id, N.containers[id].netns, "eth0"), id .. " container")
    end
    local parts = {}
    for _, id in ipairs(N.members) do parts[#parts + 1] = id .. " " .. mtu[id] end
    say("WireGuard MTUs: ", table.concat(parts, ", "))
  end)

  it("carries 1 MB of TCP between containers across the small link, MSS clamped", function()
    local lines = {}
    for _, pair in ipairs({ { "n4", "n3" }, { "n1", "n3" }, { "n3", "n5" }, { "n5", "n4" } }) do
      local from, to = pair[1], pair[2]
      local out, ok = S:exec(from, N.containers[from].netns, "python3 " .. sim.peer_py .. " push "
        .. N.containers[to].ip .. " 9000 " .. MB .. " 20")
      assert.is_true(ok, from .. " → " .. to .. ": " .. out)
      local bytes, seconds, mss = out:match("^(%d+) ([%d.]+) (%d+)$")
      assert.equal(MB, tonumber(bytes), from .. " → " .. to .. ": " .. out)
      -- The MSS fits the smallest tunnel on the way (IPv4: MTU - 40):
      -- every path here crosses a public NR at 1320, also n5 → n4 (both
      -- 1340, their own SYNs say 1300: clamped by their aggregator).
      assert.is_true(tonumber(mss) <= mtu.n3 - 40, from .. " → " .. to .. " MSS " .. mss)
      lines[#lines + 1] = string.format("%s→%s %.2f s (MSS %s)", from, to, tonumber(seconds), mss)
    end
    say("1 MB TCP: ", table.concat(lines, ", "))
  end)

  it("answers an oversized ping with DF set with fragmentation needed, not silence", function()
    -- n4's tunnel to its aggregator carries more than n3's paths can.
    assert.is_true(mtu.n4 > mtu.n3, "n4 " .. mtu.n4 .. ", n3 " .. mtu.n3)
    local size = mtu.n4 - 28
    local out = S:exec("n4", N.containers.n4.netns, "ping -4 -M do -c 2 -W 2 -s " .. size .. " "
      .. N.containers.n3.ip)
    assert.matches("Frag needed and DF set %(mtu = " .. mtu.n3 .. "%)", out)
    -- What fits the path passes.
    local _, ok = S:exec("n4", N.containers.n4.netns, "ping -4 -M do -c 1 -W 2 -s " .. (mtu.n3 - 28) .. " "
      .. N.containers.n3.ip)
    assert.is_true(ok)
    say(string.format("DF ping of %d bytes from n4 (MTU %d) to n3: %s", size + 28, mtu.n4,
      out:match("(From [^\n]*Frag needed[^\n]*)") or "?"))
  end)
end)
