-- The simulator itself: its teardown ends every process of the run, also
-- those started with `ip netns exec` inside a node (which makes a new mount
-- namespace), and leaves no namespace; NAT routers get LANs of their own.
-- Checked from outside, with /proc and `ip netns`, not only S:leftovers().
local core = require "zmesh.core"
local sim = require "zmesh.sim"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local NET_ID = "simt1"

local function new_sim(tag)
  return sim.new { prefix = "zt" .. testns.run_id .. tag .. "-", bin = BIN, backend = "userspace" }
end

-- "net:[ino]" of each named namespace at the paths given (a directory of
-- names such as /run/netns, or /proc/<holder>/root/run/netns).
local function named_ids(dir, filter)
  local ids = {}
  for _, name in ipairs(core.fs.list(dir) or {}) do
    if not filter or filter(name) then
      local ino = testns.sh("stat -L -c %i " .. sim.q(dir .. "/" .. name))
      if ino:match("^%d+$") then ids["net:[" .. ino .. "]"] = dir .. "/" .. name end
    end
  end
  return ids
end

-- Every process (and open file) on the machine that refers to one of IDS
-- (namespace links "net:[…]" or "mnt:[…]"): one line each.
local function holders_of(ids)
  local found = {}
  for _, pid in ipairs(core.fs.list("/proc") or {}) do
    if pid:match("^%d+$") then
      local base = "/proc/" .. pid
      for _, kind in ipairs({ "net", "mnt" }) do
        local id = core.fs.readlink(base .. "/ns/" .. kind)
        if id and ids[id] then
          found[#found + 1] = pid .. " in " .. ids[id] .. ": " .. testns.sh("tr '\\0' ' ' 2>/dev/null < " .. base .. "/cmdline")
        end
      end
      for _, fd in ipairs(core.fs.list(base .. "/fd") or {}) do
        local id = core.fs.readlink(base .. "/fd/" .. fd)
        if id and ids[id] then found[#found + 1] = pid .. " holds fd " .. fd .. " on " .. ids[id] end
      end
    end
  end
  return found
end

-- The pid a shell command started in the background printed ("… & echo $!").
local function started(out, ok)
  assert(ok, out)
  local pid = out:match("(%d+)%s*$")
  assert(pid, "no pid in: " .. out)
  return pid
end

describe("the simulator", function()
  it("ends every process of the run and leaves no namespace", function()
    local S = new_sim("s")
    local destroyed, pids = false, {}
    finally(function()
      if not destroyed then S:destroy() end
      -- Even when the teardown under test fails: leave nothing behind.
      for _, pid in pairs(pids) do
        local cmd = testns.sh("tr '\\0' ' ' 2>/dev/null < /proc/" .. pid .. "/cmdline")
        if cmd:find("1000", 1, true) or cmd:find("serve", 1, true) then testns.sh("kill -9 " .. pid) end
      end
    end)

    S:internet()
    local n1 = S:node { id = "n1", addr = "203.0.113.11/24" }
    assert(S:call("n1", "node.start", {}))
    local facts = assert(S:call("n1", "node.facts", {}))
    local key = core.key.generate()
    local config = {
      net_id = NET_ID, network = "simtest", node_id = "n1",
      ip_range = "10.9.0.0/16", subnet = "10.9.1.0/24",
      wireguard_private_key = key:seal(facts.public_key),
      wireguard_public_key = key:public(),
      wireguard_listen_port = 51820, peers = {},
    }
    key:close()
    assert(S:call("n1", "nr.apply", config))
    assert(S:call("n1", "container.attach",
      { net_id = NET_ID, netns = "c1", ip = "10.9.1.10", create = true }))
    -- Re-addressed in one apply: the new address alone, and its routes.
    assert(S:call("n1", "container.attach",
      { net_id = NET_ID, netns = "c1", ip = "10.9.1.11", create = true }))
    assert.matches("^10%.9%.1%.11/24$", (S:exec("n1", "c1",
      "ip -4 -o addr show dev eth0 | awk '{print $4}'")))
    assert.matches("default via 10%.9%.1%.1 dev eth0", (S:exec("n1", "c1", "ip -4 route show default")))
    assert(S:call("n1", "container.attach",
      { net_id = NET_ID, netns = "c1", ip = "10.9.1.10", create = true }))

    -- Long-running processes everywhere in the node; each prints its pid.
    local bg = " >/dev/null 2>&1 & echo $!"
    pids = {
      container = started(S:exec("n1", "c1", "sleep 1000001" .. bg)),
      server = started(S:exec("n1", "c1", "python3 " .. sim.peer_py .. " serve 9090" .. bg)),
      nr = started(S:exec("n1", "n-" .. NET_ID, "sleep 1000002" .. bg)),
      ndmz = started(S:exec("n1", "ndmz", "sleep 1000003" .. bg)),
      -- The node's root namespace, from outside and from inside.
      root = started(testns.sh("ip netns exec " .. n1.host .. " sleep 1000004" .. bg)),
      inside = started(S:sh("n1", "unshare --mount sleep 1000005" .. bg)),
      sh = started(S:sh("n1", "sleep 1000006" .. bg)),
      -- Below a shell in the container, in a namespace of its own.
      parent = started(S:exec("n1", "c1", "sh -c 'unshare --net sleep 1000007; true'" .. bg)),
    }
    local child
    for _ = 1, 100 do
      child = testns.sh("cat /proc/" .. pids.parent .. "/task/" .. pids.parent .. "/children")
      if child:match("^%d+$") and testns.sh("cat /proc/" .. child .. "/comm") == "sleep" then break end
      testns.sh("sleep 0.02")
    end
    assert.matches("^%d+$", child)
    pids.unshared = child

    -- The run's namespaces, seen from outside while the node is up: the
    -- named ones on this machine and those in the node's private /run.
    local ids = named_ids("/run/netns", function(name) return name:sub(1, #S.prefix) == S.prefix end)
    local inner = named_ids("/proc/" .. n1.pid .. "/root/run/netns")
    local count = 0
    for id, where in pairs(inner) do ids[id], count = where, count + 1 end
    assert.equal(3, count) -- ndmz, n-simt1, c1
    ids[core.fs.readlink("/proc/" .. n1.pid .. "/ns/mnt")] = "the mount namespace of n1"
    local unshared = core.fs.readlink("/proc/" .. child .. "/ns/net")
    assert.is_nil(ids[unshared])
    ids[unshared] = "the namespace of the unshared child"
    for what, pid in pairs(pids) do
      local net = core.fs.readlink("/proc/" .. pid .. "/ns/net")
      assert.truthy(net and ids[net], what .. " (" .. pid .. ") runs in none of the run's namespaces")
    end

    -- S:leftovers() sees them all too (checked below, after the teardown).
    local listed, unreported = {}, {}
    for _, line in ipairs(S:leftovers()) do
      local pid = line:match("^process (%d+)")
      if pid then listed[pid] = true end
    end
    for what, pid in pairs(pids) do
      if not listed[pid] then unreported[#unreported + 1] = what .. " (" .. pid .. ")" end
    end
    table.sort(unreported)

    S:destroy()
    destroyed = true

    local running = {}
    for what, pid in pairs(pids) do
      local cmd = testns.sh("tr '\\0' ' ' 2>/dev/null < /proc/" .. pid .. "/cmdline")
      if cmd:find("1000", 1, true) or cmd:find("serve", 1, true) then
        running[#running + 1] = what .. " (" .. pid .. "): " .. cmd
      end
    end
    table.sort(running)
    assert.same({}, running)
    assert.same({}, holders_of(ids))
    assert.equal("", (testns.sh("ip netns list | grep -F -- " .. sim.q(S.prefix) .. " || true")))
    assert.same({}, S:leftovers())
    assert.same({}, unreported)
  end)

  it("gives each NAT router a LAN of its own", function()
    local S = new_sim("r")
    finally(function()
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    S:internet()
    local r1 = S:nat_router("r1", { wan = "203.0.113.101/24" })
    local r2 = S:nat_router("r2", { wan = "203.0.113.102/24" })
    assert.not_equal(r1.lan_prefix, r2.lan_prefix)
    assert.not_equal(r1.gateway, r2.gateway)
    local h1 = S:node { id = "h1", behind = "r1" }
    local h2 = S:node { id = "h2", behind = "r2" }
    local a1, a2 = h1.config.uplink.addresses[1], h2.config.uplink.addresses[1]
    assert.not_equal(a1, a2)
    -- The kernel agrees: each router's LAN has its own address, and each
    -- hidden node reaches its own router only.
    for _, r in ipairs({ r1, r2 }) do
      local out = testns.sh("ip -n " .. r.ns .. " -4 -o addr show dev lan")
      assert.matches(r.gateway .. "/24", out, 1, true)
    end
    for _, h in ipairs({ { "h1", r1, r2 }, { "h2", r2, r1 } }) do
      assert(S:call(h[1], "node.start", {}))
      local out, ok = S:exec(h[1], "ndmz", "ping -c 1 -W 2 " .. h[2].gateway)
      assert.is_true(ok, out)
      out, ok = S:exec(h[1], "ndmz", "ping -c 1 -W 1 " .. h[3].gateway)
      assert.is_false(ok, h[1] .. " reaches the other router's LAN: " .. out)
    end
  end)
end)
