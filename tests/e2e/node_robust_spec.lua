-- The node side under a hostile environment, on a simulated node with the
-- real kernel and wireguard-go: zmesh killed (SIGKILL) at many points of an
-- apply, an update and a removal; 20 calls at once; remove then apply at
-- once; what a tenant's container can reach in the shared ndmz; what the
-- WireGuard daemon inherits. After each: one call converges, nothing leaks.
local core = require "zmesh.core"
local json = require "zmesh.json"
local nrconf = require "nrconf"
local sim = require "zmesh.sim"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local KILL_POINTS = 32

local function new_sim(tag)
  return sim.new { prefix = "zt" .. testns.run_id .. tag .. "-", bin = BIN, backend = "userspace" }
end

-- A public node, started, and its facts.
local function one_node(S)
  S:internet()
  S:node { id = "n1", addr = "203.0.113.11/24" }
  assert(S:call("n1", "node.start", {}))
  return assert(S:call("n1", "node.facts", {}))
end

local function nr_config(facts, net_id, k, npeers, keepalive)
  return nrconf.make(facts, net_id, k, npeers, keepalive)
end

-- Put TEXT at PATH inside node ID's private /run.
local function put(S, id, path, text)
  assert(core.fs.write("/proc/" .. S.nodes[id].pid .. "/root" .. path, text, tonumber("644", 8)))
end

-- Everything of the node that a leak would show, as one table, read in
-- one shell call from inside the node.
local function observe(S, net_id)
  local script = table.concat({
    "echo '## netns'; ip netns list | awk '{print $1}' | LC_ALL=C sort",
    "echo '## ndmz'; ip -n ndmz -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | LC_ALL=C sort",
    "echo '## daemons'; pgrep -x wireguard-go --nslist mnt --ns " .. S.nodes.n1.pid .. " | wc -l",
    "echo '## sockets'; ls /run/wireguard | LC_ALL=C sort",
    "echo '## files'; (cd /run/zmesh && find . -type f ! -name lock | LC_ALL=C sort)",
    "echo '## state'; (cd " .. S.nodes.n1.config.state_dir .. " && find . -type f ! -name node.key | LC_ALL=C sort)",
    -- Public key, endpoint, allowed IPs, keepalive of every peer (the
    -- device line, which holds the private key, is left out).
    "echo '## port'; wg show w-" .. net_id .. " listen-port 2>/dev/null",
    "echo '## peers'; wg show w-" .. net_id .. " dump 2>/dev/null | tail -n +2 | cut -f1,3,4,8",
  }, "; ")
  local out = assert(S:sh("n1", script))
  local got, section = {}, nil
  for line in (out .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^## (%w+)$")
    if name then section = name got[name] = {} elseif section and line ~= "" then
      table.insert(got[section], line)
    end
  end
  return got
end

local function sorted(t) table.sort(t) return t end

-- The state after a converged apply of CFG: its namespace, one daemon, its
-- socket, its files, and WireGuard holding exactly CFG's peers.
local function assert_applied(S, cfg, what)
  local id = cfg.net_id
  local got = observe(S, id)
  assert.same({ "n-" .. id, "ndmz" }, got.netns, what)
  -- w-<id>: the placeholder of its wireguard-go (core/wg_tun.c).
  assert.same({ "lo", "n-" .. id, "public", "tonrs", "w-" .. id }, got.ndmz, what)
  assert.same({ "1" }, got.daemons, what)
  assert.same({ "w-" .. id .. ".sock" }, got.sockets, what)
  assert.same({ "./log/w-" .. id .. ".log" }, got.files, what)
  assert.same({ "./nrs/" .. id .. ".json" }, got.state, what)
  assert.same({ tostring(cfg.wireguard_listen_port) }, got.port, what)
  local want, have = {}, {}
  for _, p in ipairs(cfg.peers) do
    want[#want + 1] = table.concat({ p.wireguard_public_key, p.endpoint,
      table.concat(sorted({ table.unpack(p.allowed_ips) }), ","),
      tostring(p.persistent_keepalive or "off") }, "\t")
  end
  for _, line in ipairs(got.peers) do
    local f = {}
    for x in line:gmatch("[^\t]+") do f[#f + 1] = x end
    local ips = {}
    for x in (f[3] or ""):gmatch("[^,]+") do ips[#ips + 1] = x end
    f[3] = table.concat(sorted(ips), ",")
    have[#have + 1] = table.concat(f, "\t")
  end
  assert.same(sorted(want), sorted(have), what)
end

-- Nothing of NR ID is left.
local function assert_removed(S, id, what)
  local got = observe(S, id)
  assert.same({ "ndmz" }, got.netns, what)
  assert.same({ "lo", "public", "tonrs" }, got.ndmz, what)
  assert.same({ "0" }, got.daemons, what)
  assert.same({}, got.sockets, what)
  assert.same({}, got.files, what)
  assert.same({}, got.state, what)
end

-- Start `zmesh call ENTRY -` with the JSON in FILE inside the node, kill
-- it with SIGKILL after DELAY seconds; true when the kill came first.
local function kill_after(S, entry, file, delay)
  local out = assert(S:sh("n1", string.format(
    "%s call %s - < %s >/dev/null 2>&1 & p=$!; sleep %.3f; kill -9 $p 2>/dev/null && echo killed; wait $p 2>/dev/null; true",
    S.bin, entry, file, delay)))
  return out:find("killed", 1, true) ~= nil
end

-- Seconds a call of ENTRY with FILE takes, done for real: the zmesh
-- process alone, timed inside the node as kill_after starts it.
local function timed(S, entry, file)
  local out, ok = S:sh("n1", string.format(
    "t0=$(date +%%s%%N); %s call %s - < %s >/dev/null || exit 1; echo $(( $(date +%%s%%N) - t0 ))",
    S.bin, entry, file))
  assert(ok, out)
  return tonumber(out) / 1e9
end

describe("the node side, killed, raced and probed", function()
  it("converges after a SIGKILL at any point of an apply, an update and a removal", function()
    local S = new_sim("k")
    finally(function()
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    local facts = one_node(S)
    -- v2: peer 1 gone, peer 2 moved with a keepalive, peer 3 as it was,
    -- a new peer 4.
    local v1 = nr_config(facts, "kill1", 1, 3)
    local v2 = json.decode(json.encode(v1))
    local fresh = nr_config(facts, "x", 1, 4, 15).peers[4]
    v2.peers[2].endpoint, v2.peers[2].persistent_keepalive = "203.0.113.199:51999", 25
    v2.peers = { v2.peers[2], v2.peers[3], fresh }
    put(S, "n1", "/run/v1.json", json.encode(v1))
    put(S, "n1", "/run/v2.json", json.encode(v2))
    put(S, "n1", "/run/rm.json", json.encode({ net_id = "kill1" }))
    put(S, "n1", "/run/attach.json", json.encode({ net_id = "kill1", netns = "ctr1",
      ip = "10.1.1.10", create = true }))

    -- How long each takes, so that the kills spread over its whole run.
    local t_apply = timed(S, "nr.apply", "/run/v1.json")
    local t_update = timed(S, "nr.apply", "/run/v2.json")
    timed(S, "container.attach", "/run/attach.json")
    local t_remove = timed(S, "nr.remove", "/run/rm.json")
    assert(S:sh("n1", "ip netns delete ctr1"))
    assert_removed(S, "kill1", "after a plain removal")
    io.write(string.format("\n# apply %.0f ms, update %.0f ms, removal %.0f ms; %d kills each\n",
      t_apply * 1000, t_update * 1000, t_remove * 1000, KILL_POINTS))

    local kills = { apply = 0, update = 0, remove = 0 }
    for i = 1, KILL_POINTS do
      local frac = (i - 1) / (KILL_POINTS - 1)
      -- Apply from nothing.
      if kill_after(S, "nr.apply", "/run/v1.json", frac * t_apply) then kills.apply = kills.apply + 1 end
      assert(S:call("n1", "nr.apply", v1))
      assert_applied(S, v1, "apply killed at " .. i)
      -- Update v1 -> v2.
      if kill_after(S, "nr.apply", "/run/v2.json", frac * t_update) then kills.update = kills.update + 1 end
      assert(S:call("n1", "nr.apply", v2))
      assert_applied(S, v2, "update killed at " .. i)
      -- Removal, with a container attached.
      assert(S:call("n1", "container.attach", { net_id = "kill1", netns = "ctr1", ip = "10.1.1.10",
        create = true }))
      if kill_after(S, "nr.remove", "/run/rm.json", frac * t_remove) then kills.remove = kills.remove + 1 end
      local res = assert(S:call("n1", "nr.remove", { net_id = "kill1" }))
      assert.is_boolean(res.removed)
      -- The container's namespace is its runtime's: it stays, without its link.
      assert.equal("lo", (S:sh("n1", "ip -n ctr1 -o link show | awk -F': ' '{print $2}'")))
      assert(S:sh("n1", "ip netns delete ctr1"))
      assert_removed(S, "kill1", "removal killed at " .. i)
    end
    io.write(string.format("# killed mid-way: apply %d, update %d, removal %d of %d\n",
      kills.apply, kills.update, kills.remove, KILL_POINTS))
    -- Enough kills must have landed inside the call, or this tested
    -- nothing (the later points may come after a fast call ended).
    for what, n in pairs(kills) do
      assert.is_true(n >= KILL_POINTS // 4, what .. ": only " .. n .. " kills landed mid-way")
    end
  end)

  it("serialises 20 concurrent calls: distinct uplinks, every NR whole", function()
    local S = new_sim("c")
    -- busted keeps one finally per test: the server goes with the sim.
    finally(function()
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    local facts = one_node(S)
    local server = S:host("srv", "203.0.113.200/24")
    local peer = testns.sh("realpath " .. sim.peer_py)
    testns.sh("ip netns exec " .. server .. " python3 " .. peer .. " serve 8080 >/dev/null 2>&1 &")
    -- Ten NRs, each applied twice at the same moment: 20 calls.
    local cmds = {}
    for k = 1, 10 do
      local cfg = nr_config(facts, "con" .. k, k, 2)
      put(S, "n1", "/run/con" .. k .. ".json", json.encode(cfg))
      for c = 1, 2 do
        cmds[#cmds + 1] = string.format("(%s call nr.apply - < /run/con%d.json > /run/out%d.%d 2>&1; echo $? >> /run/out%d.%d) &",
          S.bin, k, k, c, k, c)
      end
    end
    assert(S:sh("n1", table.concat(cmds, " ") .. " wait"))
    local uplinks = {}
    for k = 1, 10 do
      for c = 1, 2 do
        local out = S:sh("n1", string.format("cat /run/out%d.%d", k, c))
        assert.matches("\n0$", out, nil, false)
        local res = json.decode(out:gsub("\n0$", ""))
        assert.equal("con" .. k, res.net_id)
        if c == 1 then uplinks[res.uplink_address] = (uplinks[res.uplink_address] or 0) + 1 end
      end
      -- Each NR has its own address, its daemon, and the Internet.
      local addr = S:sh("n1", "ip -n n-con" .. k .. " -4 -o addr show public | awk '{print $4}'")
      assert.equal(1, uplinks[addr], "uplink " .. addr .. " of con" .. k)
      local out, ok = S:exec("n1", "n-con" .. k, "python3 " .. peer .. " probe tcp 203.0.113.200 8080 3")
      assert.is_true(ok, "con" .. k .. " has no Internet: " .. out)
      out, ok = S:sh("n1", "wg show w-con" .. k .. " listen-port")
      assert.is_true(ok, out)
      assert.equal(tostring(51820 + k), out)
    end
    local count = 0
    for _ in pairs(uplinks) do count = count + 1 end
    assert.equal(10, count)
    assert.equal("10", (S:sh("n1", "pgrep -x wireguard-go --nslist mnt --ns " .. S.nodes.n1.pid .. " | wc -l")))
  end)

  it("applies again right after a removal, and keeps no log of removed NRs", function()
    local S = new_sim("r")
    finally(function()
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    local facts = one_node(S)
    local cfg = nr_config(facts, "rr1", 1, 2)
    -- The removal is a plan first: shown, nothing changed.
    assert(S:call("n1", "nr.apply", cfg))
    local out, ok = S:sh("n1", S.bin .. " node remove rr1 --dry-run")
    assert.is_true(ok, out)
    local plan = json.decode(out).changes
    assert.matches("delete wireguard w%-rr1@n%-rr1 and stop its daemon", plan[1])
    assert.truthy(#plan >= 4)
    assert_applied(S, cfg, "after a dry run")
    out, ok = S:sh("n1", S.bin .. " node stop --dry-run")
    assert.is_true(ok, out)
    assert.matches("delete namespace ndmz", out)
    assert_applied(S, cfg, "after a dry run of stop")
    assert(S:call("n1", "nr.remove", { net_id = "rr1" }))
    for i = 1, 20 do
      local res, err = S:call("n1", "nr.apply", cfg)
      assert.truthy(res, "apply " .. i .. " after a removal: " .. tostring(err))
      assert(S:call("n1", "nr.remove", { net_id = "rr1" }))
    end
    assert_removed(S, "rr1", "after 20 cycles")
    assert.equal("", (S:sh("n1", "ls /run/zmesh/log")))
  end)

  it("keeps tenants out of the shared ndmz; the WireGuard daemon gets a bare environment", function()
    local S = new_sim("i")
    finally(function()
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    local facts = one_node(S)
    local cfg = nr_config(facts, "iso1", 1, 1)
    assert(S:call("n1", "nr.apply", cfg))
    assert(S:call("n1", "container.attach", { net_id = "iso1", netns = "t1", ip = "10.1.1.10", create = true }))
    local peer = testns.sh("realpath " .. sim.peer_py)
    local server = S:host("srv", "203.0.113.200/24")
    -- Ends with the sim (its teardown finds every process of the run).
    testns.sh("ip netns exec " .. server .. " python3 " .. peer .. " serve 8080 >/dev/null 2>&1 &")
    -- Something listening in the ndmz, on every address it has.
    S:exec("n1", "ndmz", "python3 " .. peer .. " serve 9191 >/dev/null 2>&1 &")
    S:sh("n1", "sleep 0.3")
    local out, ok = S:exec("n1", "ndmz", "python3 " .. peer .. " probe tcp 100.127.0.1 9191 2")
    assert.is_true(ok, "the ndmz listener does not answer in the ndmz itself: " .. out)
    for _, target in ipairs({ "100.127.0.1", "203.0.113.11" }) do
      for _, proto in ipairs({ "tcp", "udp" }) do
        out, ok = S:exec("n1", "t1", "python3 " .. peer .. " probe " .. proto .. " " .. target .. " 9191 1")
        assert.is_false(ok, "a container reached " .. proto .. " " .. target .. ":9191 in the ndmz: " .. out)
      end
    end
    -- The Internet is still there, through the ndmz.
    out, ok = S:exec("n1", "t1", "python3 " .. peer .. " probe udp 203.0.113.200 8080 3")
    assert.is_true(ok, out)
    assert.equal("203.0.113.11", out)
    -- wireguard-go: only what it needs, nothing of the caller's environment.
    local pid = S:sh("n1", "pgrep -x wireguard-go --nslist mnt --ns " .. S.nodes.n1.pid)
    assert.matches("^%d+$", pid)
    local env = S:sh("n1", "tr '\\0' '\\n' < /proc/" .. pid .. "/environ | cut -d= -f1 | LC_ALL=C sort")
    -- WG_TUN_FD: the TUN made for it in the NR (core/wg_tun.c).
    assert.equal("PATH\nWG_PROCESS_FOREGROUND\nWG_TUN_FD", env)
  end)
end)
