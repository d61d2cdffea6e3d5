-- The fleet's control plane on NATS JetStream, end to end in the
-- simulated fleet: a three-server NATS cluster on the simulated Internet
-- (configured by `zmesh net nats-config`), five nodes (two hidden behind
-- NAT) whose daemons dial out with their own nkeys, and the user's tool
-- on a host of its own. Publish → every node applies → all pairs reach
-- each other; `zmesh net check` shows the full matrix. One server killed:
-- nothing changes, a publish still arrives. All servers stopped: traffic
-- keeps flowing (a continuous ping loses nothing), and a publish after
-- they return is applied within seconds. A node cut off while three
-- revisions pass applies only the newest. A node's credentials cannot
-- read another node's key or write another's status. Two concurrent
-- publishes from the same generation: one conflict, no mixed state.
local json = require "zmesh.json"
local sim = require "zmesh.sim"
local simnats = require "zmesh.sim.nats"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local sh, q = sim.sh, sim.q

local function within(seconds, fn, what)
  local t0 = sim.now()
  while sim.now() - t0 < seconds do
    local v = fn()
    if v then return sim.now() - t0, v end
    sh("sleep 0.1")
  end
  if type(what) == "function" then what = what() end
  error(string.format("%s: not within %.1f s", what, seconds), 2)
end

local IDS = { "n1", "n2", "n3", "n4", "n5" }

describe("the control plane on NATS JetStream", function()
  it("delivers configs to five nodes, survives losing NATS, refuses foreign keys, and never mixes publishes", function()
    local S = sim.new { prefix = "zt" .. testns.run_id .. "c-", bin = BIN, backend = "userspace" }
    finally(function()
      -- ZMESH_CONTROL_LOGS=DIR keeps the daemons' and servers' logs.
      local keep = os.getenv("ZMESH_CONTROL_LOGS")
      if keep then
        for _, id in ipairs(IDS) do
          if S.nodes[id] then S:sh(id, "cat /run/zmesh-daemon.log > " .. q(keep .. "/" .. id .. ".log")) end
        end
        sh("cp " .. q(S:state_root()) .. "/nats/*.log " .. q(keep) .. " 2>/dev/null")
      end
      S:destroy()
      assert.same({}, S:leftovers())
    end)
    local t_start = sim.now()
    S:internet()
    local r1 = S:nat_router("r1", { wan = "203.0.113.61/24" })
    local r2 = S:nat_router("r2", { wan = "203.0.113.62/24" })
    local _ = r1 and r2
    for i = 1, 3 do S:node { id = "n" .. i, addr = "203.0.113." .. (10 + i) .. "/24", reconcile_interval = 2 } end
    S:node { id = "n4", behind = "r1", reconcile_interval = 2 }
    S:node { id = "n5", behind = "r2", reconcile_interval = 2 }
    for _, id in ipairs(IDS) do simnats.management(S, id) end
    local C = simnats.cluster(S, { count = 3 })
    simnats.user_host(S)
    local dir = S:state_root() .. "/user"
    assert(os.execute("mkdir -p " .. q(dir)))
    local file = dir .. "/demo.json"
    local out, ok = sh(BIN .. " net new " .. q(file) .. " demo 10.7.0.0/16 --id ctl1")
    assert.is_true(ok, out)
    -- Server files and one nkey per node (n5 is about to join).
    out = C:configure({ file }, IDS)
    assert.matches("made nkey seed", out)
    assert.equal("600", (sh("stat -c %a " .. q(C.dir .. "/nats1.conf"))))
    assert.equal("600", (sh("stat -c %a " .. q(C:seed("n1")))))
    local conf = sh("cat " .. q(C.dir .. "/nats1.conf"))
    assert.matches('"$KV.zmesh.status.n1.>"', conf, 1, true)
    assert.matches('"$JS.API.CONSUMER.CREATE.KV_zmesh.*.$KV.zmesh.nr.n1.>"', conf, 1, true)
    assert.is_nil(conf:find("%f[%w]SU" .. string.rep("[A-Z2-7]", 56)), "no seed in a server file")
    C:start_all()
    local urls = table.concat(C:urls(), ",")
    local nats = " --nats " .. urls .. " --nkey " .. q(C.admin_seed)
    -- This test is about the control plane: a calm failover policy keeps
    -- the first handshakes of fresh NRs from moving traffic around.
    local calm = [[
return { name = "failover", version = 1, settings = function()
  return { interval = 1, dead_after = 120, hold = 0, fail_back = true, internet_targets = { "203.0.113.254" } }
end }
]]
    for _, id in ipairs(IDS) do
      local root = "/proc/" .. S.nodes[id].pid .. "/root/run/zmesh-policies"
      assert(require("zmesh.core").fs.mkdir(root, tonumber("755", 8)))
      assert(require("zmesh.core").fs.write(root .. "/failover.lua", calm, tonumber("644", 8)))
      S.nodes[id].config.policy_dirs = { "/run/zmesh-policies" }
    end
    -- The daemons dial out, the hidden ones through their NAT routers.
    -- n5's starts without a control section and is given one by SIGHUP.
    for _, id in ipairs(IDS) do
      if id == "n5" then
        S:write_config(id)
        S:daemon_start(id)
      end
      simnats.control(S, C, id, { status_interval = 1, retry_max = 2, ping_interval = 1 })
      if id == "n5" then S:daemon_reload(id) else S:daemon_start(id) end
    end
    local facts = {}
    for i = 1, 4 do
      local id = IDS[i]
      within(15, function()
        local status, f = S:api(id, "GET", "/v1/node")
        if status == 200 then facts[id] = f end
        return status == 200
      end, "facts of " .. id)
      local path = dir .. "/facts-" .. id .. ".json"
      assert(require("zmesh.core").fs.write(path, json.encode(facts[id]), tonumber("644", 8)))
      out, ok = sh(BIN .. " net add-node " .. q(file) .. " " .. q(path))
      assert.is_true(ok, out)
    end

    local function publish(f, extra)
      return simnats.as_user(S, BIN .. " net publish " .. q(f) .. nats .. (extra or ""))
    end
    -- The generation FILE was last published at (a publish retried after
    -- a timeout takes the next one).
    local function published(f)
      return json.decode((sh("cat " .. q(f or file)))).published.generation
    end
    -- The servers may still be electing their JetStream leader.
    within(30, function()
      out, ok = publish(file)
      return ok
    end, function() return "the first publish (" .. tostring(out) .. ")" end)
    assert.matches("generation 1: 4 NR configs written", out)

    -- Status of NODE for the network, as the node wrote it.
    local function status_of(id)
      local o, okk = simnats.as_user(S, BIN .. " call net.check " .. q(json.encode({ file = file,
        nats = C:urls(), nkey = C.admin_seed })))
      if not okk then return nil, o end
      local r = json.decode(o)
      for _, n in ipairs(r.nodes) do if n.node_id == id then return n, r end end
      return nil, r
    end
    local function all_at(gen, ids)
      local _, r = status_of("none")
      if type(r) ~= "table" then return false end
      local at = {}
      for _, n in ipairs(r.nodes) do at[n.node_id] = n.generation == gen and n.result == "ok" end
      for _, id in ipairs(ids or IDS) do if not at[id] then return false end end
      return r
    end
    -- What each node says, for a failure's message.
    local function where_at(gen)
      local _, r = status_of("none")
      if type(r) ~= "table" or not r.nodes then return "generation " .. gen .. ": no status (" .. tostring(r) .. ")" end
      local parts = {}
      for _, n in ipairs(r.nodes) do
        parts[#parts + 1] = string.format("%s at %s %s%s", n.node_id, tostring(n.generation), tostring(n.result),
          n.error and (" (" .. tostring(n.error) .. ")") or "")
      end
      return "generation " .. gen .. " wanted; " .. table.concat(parts, ", ")
    end
    within(30, function() return all_at(1, { "n1", "n2", "n3", "n4" }) end, "generation 1 applied")

    -- n5 joins: its facts from the bucket.
    within(15, function()
      out, ok = simnats.as_user(S, BIN .. " net add-node " .. q(file) .. nats .. " n5")
      return ok
    end, function() return "n5's facts in the bucket (" .. tostring(out) .. ")" end)
    local t0 = sim.now()
    out, ok = publish(file)
    assert.is_true(ok, out)
    assert.matches("generation 2: 5 NR configs written", out)
    local took = within(30, function() return all_at(2) end, "generation 2 applied on every node")
    local t_publish = sim.now() - t0
    io.write(string.format("\n# publish → applied on all 5 nodes: %.2f s (status seen after %.2f s of polling)\n",
      t_publish, took))

    -- Containers, and every pair reachable.
    local net = json.decode((sh("cat " .. q(file))))
    local subnet = {}
    for _, n in ipairs(net.nodes) do subnet[n.node_id] = n.subnet:match("^(%d+%.%d+%.%d+%.)") end
    for i, id in ipairs(IDS) do
      local status, res = S:api(id, "PUT", "/v1/nrs/ctl1/containers/c" .. i, { ip = subnet[id] .. "10", create = true })
      assert.equal(200, status, json.encode(res))
    end
    for i, a in ipairs(IDS) do
      for j, b in ipairs(IDS) do
        if i ~= j then
          local o, okk = S:exec(a, "c" .. i, "sh -c 'ping -c 1 -W 2 " .. subnet[b] .. "10 || ping -c 3 -W 3 "
            .. subnet[b] .. "10'")
          assert.is_true(okk, string.format("%s -> %s: %s", a, b, o))
        end
      end
    end
    -- The fleet-wide matrix, from the published status.
    local report, last
    local pok, perr = pcall(within, 40, function()
      local o, okk = simnats.as_user(S, BIN .. " net check " .. q(file) .. nats .. " --json")
      last = o
      report = json.decode(o)
      return okk and report
    end, "net check: every pair reachable")
    assert(pok, tostring(perr) .. ": " .. tostring(last))
    assert.equal(20, report.total)
    assert.equal(20, report.reachable)
    for _, c in ipairs(report.pairs) do
      assert.is_true(c.reachable, c.from .. " -> " .. c.to)
      assert.is_number(c.rtt_ms)
    end
    local text = simnats.as_user(S, BIN .. " net check " .. q(file) .. nats)
    io.write(text, "\n")
    assert.matches("20 of 20 pairs reachable", text, 1, true)
    -- Hidden to hidden goes through the aggregator.
    for _, c in ipairs(report.pairs) do
      if c.from == "n4" and c.to == "n5" then assert.matches("^via n%d$", c.path) end
    end
    local dot = simnats.as_user(S, BIN .. " net graph " .. q(file) .. nats)
    assert.matches('"n%d" %-%- "n4" %[color=darkgreen', dot)

    -- ---- one server killed: nothing changes, a publish still arrives ----
    local function peers_of(id) return (S:sh(id, "ip netns exec n-ctl1 wg show w-ctl1 peers | sort")) end
    local before = {}
    for _, id in ipairs(IDS) do before[id] = peers_of(id) end
    C:stop("nats1", "KILL")
    sh("sleep 1")
    for _, id in ipairs(IDS) do
      assert.equal(before[id], peers_of(id), id)
      local _, st = S:api(id, "GET", "/v1/status")
      assert.equal("ok", st.nrs.ctl1.state, id)
    end
    out, ok = simnats.as_user(S, BIN .. " net add-access " .. q(file) .. " laptop > /dev/null")
    assert.is_true(ok, out)
    t0 = sim.now()
    within(30, function()
      out, ok = publish(file)
      return ok
    end, function() return "a publish with nats1 down (" .. tostring(out) .. ")" end)
    local g3 = published()
    within(30, function() return all_at(g3) end, function()
      return "the publish applied with one server down (" .. where_at(g3) .. ")"
    end)
    io.write(string.format("# nats1 killed: publish → applied on all nodes %.2f s\n", sim.now() - t0))

    -- ---- every server stopped: the data plane does not notice ----
    for _, id in ipairs(IDS) do before[id] = peers_of(id) end
    S:sh("n1", "ip netns exec c1 ping -c 600 -i 0.03 -W 1 " .. subnet.n4 .. "10 > /run/ping14.out 2>&1 &")
    S:sh("n4", "ip netns exec c4 ping -c 600 -i 0.03 -W 1 " .. subnet.n5 .. "10 > /run/ping45.out 2>&1 &")
    sh("sleep 1")
    C:stop("nats2", "KILL")
    C:stop("nats3", "KILL")
    local jobs = {}
    local function applies(id)
      local _, m = S:api(id, "GET", "/metrics")
      local n = 0
      for v in tostring(m):gmatch('zmesh_control_applies_total{[^}]*} (%d+)') do n = n + tonumber(v) end
      return n
    end
    for _, id in ipairs(IDS) do jobs[id] = applies(id) end
    sh("sleep 6")
    for _, id in ipairs(IDS) do
      assert.equal(before[id], peers_of(id), id .. " with NATS gone")
      local _, st = S:api(id, "GET", "/v1/status")
      assert.equal("ok", st.nrs.ctl1.state, id)
      assert.equal(jobs[id], applies(id), id .. " queued nothing")
      local _, m = S:api(id, "GET", "/metrics")
      assert.matches("zmesh_control_connected 0", m, 1, true)
    end
    -- They return: the daemons reconnect (backoff at most 2 s here).
    t0 = sim.now()
    C:start_all()
    local resync = within(30, function()
      for _, id in ipairs(IDS) do
        local _, m = S:api(id, "GET", "/metrics")
        if not tostring(m):find("zmesh_control_connected 1", 1, true) then return false end
      end
      return true
    end, "every daemon reconnected")
    -- In step again: every watch delivered the newest revisions (once
    -- JetStream answers: its leaders are elected anew).
    local in_step = within(40, function()
      for _, id in ipairs(IDS) do
        local _, m = S:api(id, "GET", "/metrics")
        if not tostring(m):find("zmesh_control_in_step 1", 1, true) then return false end
      end
      return true
    end, "every daemon in step with the bucket again")
    io.write(string.format("# all NATS servers back: every daemon in step with the bucket %.2f s after the restart\n",
      in_step + resync))
    out, ok = simnats.as_user(S, BIN .. " net set-exit " .. q(file) .. " none")
    assert.is_true(ok, out)
    local t1 = sim.now()
    within(30, function()
      out, ok = publish(file)
      return ok
    end, function() return "a publish after NATS returned (" .. tostring(out) .. ")" end)
    local t2 = sim.now()
    local g4 = published()
    within(30, function() return all_at(g4) end, "the publish applied after NATS returned")
    io.write(string.format("# all NATS servers back: daemons reconnected %.2f s after the restart; publish "
      .. "accepted %.2f s later; applied on all nodes %.2f s after it was accepted\n", resync, t2 - t1, sim.now() - t2))
    within(30, function()
      return (S:sh("n1", "cat /run/ping14.out")):match("packets transmitted")
        and (S:sh("n4", "cat /run/ping45.out")):match("packets transmitted")
    end, "pings finished")
    for _, f in ipairs({ { "n1", "/run/ping14.out", "n1→n4" }, { "n4", "/run/ping45.out", "n4→n5" } }) do
      local o = S:sh(f[1], "cat " .. f[2])
      local sent, got = o:match("(%d+) packets transmitted, (%d+) received")
      io.write(string.format("# continuous ping %s through the NATS outage: %s sent, %s received\n", f[3], sent, got))
      assert.equal("600", sent, o)
      assert.equal(sent, got, o)
    end

    -- ---- a node cut off while three revisions pass applies the newest only ----
    local rules = "table inet zmtest { chain out { type filter hook output priority 0; tcp dport 4222 drop; }; }"
    out, ok = S:sh("n5", "nft " .. q(rules))
    assert.is_true(ok, out)
    within(20, function()
      local _, m = S:api("n5", "GET", "/metrics")
      return tostring(m):find("zmesh_control_connected 0", 1, true) ~= nil
    end, "n5 noticed it is cut off")
    local n5_before = applies("n5")
    for _ = 1, 3 do
      out, ok = publish(file)
      assert.is_true(ok, out)
    end
    local g7 = published()
    within(30, function() return all_at(g7, { "n1", "n2", "n3", "n4" }) end, "the newest on the others")
    t0 = sim.now()
    assert(S:sh("n5", "nft delete table inet zmtest"))
    within(30, function() return all_at(g7) end, "n5 caught up")
    io.write(string.format("# n5 cut off for three publishes: caught up %.2f s after it could dial again, "
      .. "with %d apply\n", sim.now() - t0, applies("n5") - n5_before))
    assert.equal(1, applies("n5") - n5_before)

    -- ---- a node's credentials: its own keys only ----
    local node = S.nodes.n1
    local script = [[
local client = require "zmesh.control.client"
local kv = require "zmesh.control.kv"
local json = require "zmesh.json"
local urls = {}
for u in (...):gmatch("[^,]+") do urls[#urls + 1] = u end
local cl = assert(client.connect { servers = urls, nkey_seed_file = "/run/zmesh-nats.nk", inbox_prefix = "_INBOX_n1" })
local r = {}
local e, err = kv.get(cl, "zmesh", "nr.n2.ctl1", { timeout = 1500 })
r.get_other = e and "read" or tostring(err)
local snap, serr = kv.snapshot(cl, "zmesh", "nr.n2.>", { inbox = "_INBOX_n1", timeout = 1500, delete_consumer = false })
r.watch_other = snap and "read" or tostring(serr)
local own, oerr = kv.snapshot(cl, "zmesh", "nr.n1.>", { inbox = "_INBOX_n1", timeout = 3000, delete_consumer = false })
r.watch_own = own and own["nr.n1.ctl1"] and "read" or tostring(oerr)
local rev, perr = kv.put(cl, "zmesh", "status.n2.ctl1", '{"forged":true}', { timeout = 1500 })
r.write_other = rev and "written" or tostring(perr)
rev, perr = kv.put(cl, "zmesh", "nr.n1.ctl1", '{"forged":true}', { timeout = 1500 })
r.write_own_nr = rev and "written" or tostring(perr)
cl:subscribe("$KV.zmesh.>", function() r.sniffed = true end)
cl:wait(1000)
r.subscribe_all = cl:last_violation("Subscription") or "allowed"
cl:close()
print(json.encode(r))
]]
    assert(require("zmesh.core").fs.write("/proc/" .. node.pid .. "/root/run/perm.lua", script, tonumber("600", 8)))
    out, ok = S:sh("n1", BIN .. " run /run/perm.lua " .. q(urls))
    assert.is_true(ok, out)
    local perm = json.decode(out:match("(%b{})%s*$"))
    assert.matches("^EACCES: Permissions Violation", perm.get_other)
    assert.matches("^EACCES: Permissions Violation", perm.watch_other)
    assert.equal("read", perm.watch_own)
    assert.matches("^EACCES: Permissions Violation", perm.write_other)
    assert.matches("^EACCES: Permissions Violation", perm.write_own_nr)
    assert.matches("Permissions Violation for Subscription", perm.subscribe_all)
    assert.is_nil(perm.sniffed)
    local n2 = status_of("n2")
    assert.equal(g7, n2.generation, "n2's status is its own")

    -- ---- two publishes at once from the same generation ----
    local a, b = dir .. "/a.json", dir .. "/b.json"
    assert(os.execute(string.format("cp %s %s && cp %s %s", q(file), q(a), q(file), q(b))))
    assert(sh(BIN .. " net add-access " .. q(a) .. " tablet-a > /dev/null"))
    assert(sh(BIN .. " net add-access " .. q(b) .. " tablet-b > /dev/null"))
    simnats.as_user(S, string.format("sh -c %s", q(string.format(
      "(%s net publish %s %s > %s/a.out 2>&1; echo $? > %s/a.rc) & (%s net publish %s %s > %s/b.out 2>&1; "
      .. "echo $? > %s/b.rc) & wait", BIN, q(a), nats, dir, dir, BIN, q(b), nats, dir, dir))))
    local rc = { a = sh("cat " .. dir .. "/a.rc"), b = sh("cat " .. dir .. "/b.rc") }
    local outs = { a = sh("cat " .. dir .. "/a.out"), b = sh("cat " .. dir .. "/b.out") }
    io.write(string.format("# concurrent publishes: a exit %s (%s); b exit %s (%s)\n", rc.a, outs.a, rc.b, outs.b))
    assert.same({ "0", "1" }, (function() local l = { rc.a, rc.b } table.sort(l) return l end)())
    local winner, loser = rc.a == "0" and "a" or "b", rc.a == "0" and "b" or "a"
    assert.matches("conflict: ", outs[loser])
    -- Every key at the winner's generation, and the winner's configs.
    local dump = [[
local client = require "zmesh.control.client"
local kv = require "zmesh.control.kv"
local json = require "zmesh.json"
local urls, seed = ...
local u = {}
for x in urls:gmatch("[^,]+") do u[#u + 1] = x end
local cl = assert(client.connect { servers = u, nkey_seed_file = seed })
local out = { keys = {} }
for key, e in pairs(assert(kv.snapshot(cl, "zmesh", "nr.*.ctl1", {}))) do
  out.keys[key] = { generation = tonumber(e.headers["Zmesh-Generation"]), value = e.value }
end
out.net = kv.decode(kv.get(cl, "zmesh", "net.ctl1"))
print(json.encode(out))
]]
    assert(require("zmesh.core").fs.write(dir .. "/dump.lua", dump, tonumber("600", 8)))
    out, ok = simnats.as_user(S, BIN .. " run " .. q(dir .. "/dump.lua") .. " " .. q(urls) .. " " .. q(C.admin_seed))
    assert.is_true(ok, out)
    local d = json.decode(out)
    local g8 = published(winner == "a" and a or b)
    assert.equal(g7 + 1, g8)
    assert.equal(g8, d.net.generation)
    assert.equal("published", d.net.state)
    local winfile = winner == "a" and a or b
    for _, id in ipairs(IDS) do
      local k = d.keys["nr." .. id .. ".ctl1"]
      assert.equal(g8, k.generation, id)
      local want = json.decode((sh(BIN .. " net render " .. q(winfile) .. " " .. id)))
      want.generation = g8
      assert.same(want, json.decode(k.value), id .. " holds the winner's config")
    end
    -- The loser's file is stale now: refused as such.
    out, ok = publish(loser == "a" and a or b)
    assert.is_false(ok)
    assert.matches("someone else published since", out)
    io.write(string.format("# control-plane test: %.0f s in all\n", sim.now() - t_start))
  end)
end)
