-- `zmesh daemon` on simulated nodes, provisioned only through its socket
-- (curl --unix-socket, as an operator or provisioning would): the API and
-- its errors, boot restore after a power loss, kill -9 at many points,
-- concurrent calls, drift repaired within one interval, a restart under
-- traffic that loses nothing.
local json = require "zmesh.json"
local nrconf = require "nrconf"
local sim = require "zmesh.sim"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local INTERVAL = 1   -- reconcile_interval of the simulated nodes, seconds

local function new_sim(tag)
  return sim.new { prefix = "zt" .. testns.run_id .. tag .. "-", bin = BIN, backend = "userspace" }
end

local function teardown(S)
  return function()
    S:destroy()
    assert.same({}, S:leftovers())
  end
end

-- Public nodes IDS (n1 = 203.0.113.11, …), each with its daemon running.
local function nodes_with_daemons(S, count)
  S:internet()
  local facts = {}
  for i = 1, count do
    local id = "n" .. i
    S:node { id = id, addr = "203.0.113." .. (10 + i) .. "/24", reconcile_interval = INTERVAL }
    S:daemon_start(id)
    -- The boot restore (the first job) makes the node key.
    local t0 = sim.now()
    repeat
      local _, st = S:api(id, "GET", "/v1/status")
      local done = type(st) == "table" and st.converge ~= json.null
      if not done then testns.sh("sleep 0.05") end
    until done or sim.now() - t0 > 10
    local status, f = S:api(id, "GET", "/v1/node")
    assert.equal(200, status, json.encode(f))
    facts[id] = f
  end
  return facts
end

-- One network over nodes n1..nN: NR "dmn1" on each (subnet 10.1.<i>.0/24),
-- a full mesh, and a container c<i> at 10.1.<i>.10 on each.
local function mesh_configs(facts, count)
  local core = require "zmesh.core"
  local keys, configs = {}, {}
  for i = 1, count do keys[i] = core.key.generate() end
  for i = 1, count do
    local id = "n" .. i
    local peers = {}
    for j = 1, count do
      if j ~= i then
        peers[#peers + 1] = { node_id = "n" .. j, subnet = "10.1." .. j .. ".0/24",
          wireguard_public_key = keys[j]:public(),
          allowed_ips = { "10.1." .. j .. ".0/24", "100.64.1." .. j .. "/32" },
          endpoint = "203.0.113." .. (10 + j) .. ":51820" }
      end
    end
    configs[id] = { net_id = "dmn1", network = "daemon", node_id = id, ip_range = "10.1.0.0/16",
      subnet = "10.1." .. i .. ".0/24", wireguard_private_key = keys[i]:seal(facts[id].public_key),
      wireguard_public_key = keys[i]:public(), wireguard_listen_port = 51820, peers = peers }
  end
  for _, k in ipairs(keys) do k:close() end
  return configs
end

local function provision(S, configs, count)
  for i = 1, count do
    local id = "n" .. i
    local status, res = S:api(id, "PUT", "/v1/nrs/dmn1", configs[id])
    assert.equal(200, status, json.encode(res))
    status, res = S:api(id, "PUT", "/v1/nrs/dmn1/containers/c" .. i,
      { ip = "10.1." .. i .. ".10", create = true })
    assert.equal(200, status, json.encode(res))
  end
end

-- Every container pings every other (spanning wireguard-go's link-up
-- polling and a handshake retry).
local function all_pairs(S, count)
  for i = 1, count do
    for j = 1, count do
      if i ~= j then
        local out, ok = S:exec("n" .. i, "c" .. i, "sh -c 'ping -c 1 -W 2 10.1." .. j
          .. ".10 || ping -c 3 -W 3 10.1." .. j .. ".10'")
        assert.is_true(ok, string.format("c%d -> c%d: %s", i, j, out))
      end
    end
  end
end

-- Poll FN (true when done) for up to SECONDS; returns how long it took.
local function within(seconds, fn, what)
  local t0 = sim.now()
  while sim.now() - t0 < seconds do
    if fn() then return sim.now() - t0 end
    testns.sh("sleep 0.05")
  end
  error(string.format("%s: not within %.1f s", what, seconds), 2)
end

describe("zmesh daemon", function()
  it("serves its API on a unix socket: changes through one queue, errors naming the field", function()
    local S = new_sim("a")
    finally(teardown(S))
    local facts = nodes_with_daemons(S, 1)
    -- The socket is the node's, 0600.
    assert.equal("600 socket", (S:sh("n1", "stat -c '%a %F' /run/zmesh/zmesh.sock")))
    local cfg = nrconf.make(facts.n1, "api1", 1, 2)
    -- A plan first: nothing changes.
    local status, res = S:api("n1", "PUT", "/v1/nrs/api1?dry_run=1", cfg)
    assert.equal(200, status, json.encode(res))
    assert.truthy(#res.changes > 5)
    assert.equal("ndmz", (S:sh("n1", "ip netns list | awk '{print $1}'")))
    status, res = S:api("n1", "PUT", "/v1/nrs/api1", cfg)
    assert.equal(200, status, json.encode(res))
    assert.equal("100.127.0.2/16", res.uplink_address)
    status, res = S:api("n1", "GET", "/v1/nrs")
    assert.equal(200, status)
    assert.equal("api1", res[1].net_id)
    assert.is_true(res[1].wireguard_up)
    status, res = S:api("n1", "GET", "/v1/nrs/api1")
    assert.equal(2, #res.wireguard.peers)
    -- 400: a bad field, named; nothing changed.
    local bad = json.decode(json.encode(cfg))
    bad.peers[1].allowed_ips[1] = "10.1.2.0/33"
    status, res = S:api("n1", "PUT", "/v1/nrs/api1", bad)
    assert.equal(400, status, json.encode(res))
    assert.equal("peers[1].allowed_ips[1]", res.field)
    -- 409: a listen port another NR has.
    local other = nrconf.make(facts.n1, "api2", 2, 0, nil, { port = 51821 })
    status, res = S:api("n1", "PUT", "/v1/nrs/api2", other)
    assert.equal(409, status, json.encode(res))
    assert.equal("wireguard_listen_port", res.field)
    -- 404s and 405.
    assert.equal(404, (S:api("n1", "GET", "/v1/nrs/nope")))
    assert.equal(404, (S:api("n1", "DELETE", "/v1/nrs/nope")))
    assert.equal(404, (S:api("n1", "GET", "/v1/whatever")))
    assert.equal(405, (S:api("n1", "POST", "/v1/nrs/api1")))
    -- The one-shot commands go through the daemon while it answers …
    local out, ok = S:sh("n1", BIN .. " node list --daemon")
    assert.is_true(ok, out)
    assert.equal("api1", json.decode(out)[1].net_id)
    -- … and a named entry point by POST /v1/call.
    status, res = S:api("n1", "POST", "/v1/call/nr.check", {})
    assert.equal(200, status, json.encode(res))
    assert.same({ "api1" }, res.healthy)
    -- Status and metrics.
    status, res = S:api("n1", "GET", "/v1/status")
    assert.equal(200, status)
    assert.equal("n1", res.node_id)
    assert.equal("ok", res.nrs.api1.state)
    status, res = S:api("n1", "GET", "/metrics")
    assert.equal(200, status)
    assert.matches('zmesh_jobs_total{entry="nr.apply",result="ok"} 1', res, 1, true)
    assert.matches("zmesh_up 1", res, 1, true)
    -- A bad edit of the node config changes nothing, before SIGHUP or
    -- after: the daemon and its writer keep the config in force.
    local good = S.nodes.n1.config.reconcile_interval
    S.nodes.n1.config.reconcile_interval = "fast"
    S:write_config("n1")
    status, res = S:api("n1", "PUT", "/v1/nrs/api1", cfg)
    assert.equal(200, status, json.encode(res))
    S:daemon_reload("n1")
    status, res = S:api("n1", "PUT", "/v1/nrs/api1", cfg)
    assert.equal(200, status, json.encode(res))
    assert.matches("reload: .*reconcile_interval.*keeping the config in force",
      (S:sh("n1", "cat /run/zmesh-daemon.log")))
    S.nodes.n1.config.reconcile_interval = good
    S:write_config("n1")
    -- A queued change's answer names its job; a read's never does.
    local function headers(args)
      return (S:sh("n1", "curl -s -S -o /dev/null -D - --unix-socket /run/zmesh/zmesh.sock " .. args))
    end
    assert.matches("X%-Zmesh%-Job: %d+", headers("-X PUT -H 'Content-Type: application/json' "
      .. "--data-binary @/run/curl.in http://zmesh/v1/nrs/api1"))
    for _, path in ipairs({ "/v1/status", "/v1/node", "/v1/nrs", "/v1/call" }) do
      assert.not_matches("X%-Zmesh%-Job", headers("http://zmesh" .. path), path)
    end
    -- DELETE: its plan, then the removal.
    status, res = S:api("n1", "DELETE", "/v1/nrs/api1?dry_run=1")
    assert.equal(200, status)
    assert.truthy(#res.changes > 3)
    status, res = S:api("n1", "DELETE", "/v1/nrs/api1")
    assert.equal(200, status, json.encode(res))
    assert.is_true(res.removed)
    assert.equal("ndmz", (S:sh("n1", "ip netns list | awk '{print $1}'")))
    -- Gone: deleting it again, or its plan, is 404.
    status, res = S:api("n1", "DELETE", "/v1/nrs/api1")
    assert.equal(404, status, json.encode(res))
    status, res = S:api("n1", "DELETE", "/v1/nrs/api1?dry_run=1")
    assert.equal(404, status, json.encode(res))
    assert.equal("net_id", res.field)
    -- The state_dir holds no NR any more.
    assert.equal("0", (S:sh("n1", "ls " .. S.nodes.n1.config.state_dir .. "/nrs/*.json 2>/dev/null | wc -l")))
  end)

  it("restores every NR and attachment after a power loss", function()
    local S = new_sim("p")
    finally(teardown(S))
    local facts = nodes_with_daemons(S, 2)
    local configs = mesh_configs(facts, 2)
    provision(S, configs, 2)
    all_pairs(S, 2)
    -- n1 loses power: processes, namespaces and /run gone; state_dir kept.
    S:power_loss("n1")
    assert.equal("", (S:sh("n1", "ls /run/netns")))
    assert.equal("", (S:sh("n1", "pgrep -x wireguard-go --nslist mnt --ns " .. S.nodes.n1.pid)))
    -- The container runtime makes its container again; then the daemon starts.
    assert(S:sh("n1", "ip netns add c1"))
    local t0 = sim.now()
    S:daemon_start("n1")
    local took = within(20, function()
      local status, st = S:api("n1", "GET", "/v1/status")
      return status == 200 and st.converge ~= json.null and st.converge.ok
        and st.nrs.dmn1 and st.nrs.dmn1.state == "ok" and #st.pending_containers == 0
    end, "boot restore")
    io.write(string.format("\n# boot restore after a power loss: %.2f s to converged (%.2f s after start)\n",
      sim.now() - t0, took))
    all_pairs(S, 2)
    local log = S:sh("n1", "cat /run/zmesh-daemon.log")
    assert.matches("boot restore: 1 NRs converged", log, 1, true)
  end)

  it("keeps an attachment pending while its namespace is gone, and applies it when it appears", function()
    local S = new_sim("w")
    finally(teardown(S))
    local facts = nodes_with_daemons(S, 1)
    local cfg = nrconf.make(facts.n1, "pend1", 1, 0)
    assert.equal(200, (S:api("n1", "PUT", "/v1/nrs/pend1", cfg)))
    assert.equal(200, (S:api("n1", "PUT", "/v1/nrs/pend1/containers/ctr9", { ip = "10.1.1.10", create = true })))
    assert(S:sh("n1", "ip netns delete ctr9"))
    within(5 * INTERVAL, function()
      local _, st = S:api("n1", "GET", "/v1/status")
      return #st.pending_containers == 1 and st.pending_containers[1].netns == "ctr9"
    end, "reported pending")
    assert(S:sh("n1", "ip netns add ctr9"))
    within(5 * INTERVAL, function()
      return (S:sh("n1", "ip -n ctr9 -4 -o addr show eth0 | awk '{print $4}'")) == "10.1.1.10/24"
    end, "applied once the namespace appeared")
    -- Removed through the API while pending: gone from the state.
    assert(S:sh("n1", "ip netns delete ctr9"))
    assert.equal(200, (S:api("n1", "DELETE", "/v1/nrs/pend1/containers/ctr9")))
    within(5 * INTERVAL, function()
      local _, st = S:api("n1", "GET", "/v1/status")
      return #st.pending_containers == 0
    end, "no longer pending")
  end)

  it("converges after kill -9 of the daemon at 32 points of applies and removals", function()
    local S = new_sim("k")
    finally(teardown(S))
    local facts = nodes_with_daemons(S, 1)
    local cfg = nrconf.make(facts.n1, "kd1", 1, 3)
    local node = S.nodes.n1
    assert(require("zmesh.core").fs.write("/proc/" .. node.pid .. "/root/run/kd1.json", json.encode(cfg),
      tonumber("600", 8)))
    local function killed_during(method, delay)
      local cmd = string.format("curl -s -o /dev/null -X %s --unix-socket /run/zmesh/zmesh.sock "
        .. "-H 'Content-Type: application/json' %s http://zmesh/v1/nrs/kd1 & c=$!; sleep %.3f; "
        .. "pkill -KILL -f '^%s daemon'; wait $c; true", method,
        method == "PUT" and "--data-binary @/run/kd1.json" or "", delay, BIN)
      S:sh("n1", cmd)
    end
    local function leftovers_ok(present, what)
      local ns = S:sh("n1", "ip netns list | awk '{print $1}' | LC_ALL=C sort")
      local daemons = S:sh("n1", "pgrep -x wireguard-go --nslist mnt --ns " .. node.pid .. " | wc -l")
      local ndmz = S:sh("n1", "ip -n ndmz -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | LC_ALL=C sort | tr '\\n' ' '")
      local sockets = S:sh("n1", "ls /run/wireguard")
      if present then
        assert.equal("n-kd1\nndmz", ns, what)
        assert.equal("1", daemons, what)
        assert.equal("lo n-kd1 public tonrs w-kd1", ndmz, what)
        assert.equal("w-kd1.sock", sockets, what)
      else
        assert.equal("ndmz", ns, what)
        assert.equal("0", daemons, what)
        assert.equal("lo public tonrs", ndmz, what)
        assert.equal("", sockets, what)
      end
    end
    local function converged()
      within(15, function()
        local status, st = S:api("n1", "GET", "/v1/status")
        return status == 200 and st.converge ~= json.null and st.queue.waiting == 0
          and st.queue.running == json.null
      end, "converged")
    end
    local landed = 0
    for i = 1, 32 do
      local delay = (i - 1) * 0.006
      -- An apply killed: after the restart, all of it or none of it.
      killed_during("PUT", delay)
      if (S:sh("n1", "pgrep -f '^" .. BIN .. " daemon' | wc -l")) == "0" then landed = landed + 1 end
      S:daemon_start("n1")
      converged()
      local stored = (S:sh("n1", "ls " .. node.config.state_dir .. "/nrs/*.json 2>/dev/null | wc -l")) ~= "0"
      leftovers_ok(stored, "after an apply killed at " .. delay)
      -- Provisioning retries: now it is there.
      assert.equal(200, (S:api("n1", "PUT", "/v1/nrs/kd1", cfg)))
      leftovers_ok(true, "after the retried apply " .. i)
      -- A removal killed.
      killed_during("DELETE", delay * 2)
      S:daemon_start("n1")
      converged()
      local st = S:api("n1", "DELETE", "/v1/nrs/kd1")
      assert.truthy(st == 200 or st == 404)
      leftovers_ok(false, "after a removal killed at " .. delay * 2)
    end
    io.write(string.format("\n# daemon killed (kill -9) at 32 points of an apply and of a removal; "
      .. "%d apply kills hit a live daemon; every restart converged\n", landed))
    assert.is_true(landed > 0)
  end)

  it("orders 20 concurrent calls on two NRs: the last accepted wins, nothing shared", function()
    local S = new_sim("q")
    finally(teardown(S))
    local facts = nodes_with_daemons(S, 1)
    local core = require "zmesh.core"
    local node = S.nodes.n1
    local keys = { core.key.generate(), core.key.generate() }
    local cmds, variants = {}, {}
    for c = 1, 20 do
      local k = (c % 2) + 1
      local cfg = nrconf.make(facts.n1, "cc" .. k, k, 1 + c % 3, nil, { key = keys[k] })
      variants[c] = cfg
      assert(core.fs.write("/proc/" .. node.pid .. "/root/run/cc" .. c .. ".json", json.encode(cfg),
        tonumber("600", 8)))
      cmds[#cmds + 1] = string.format("curl -s -D /run/cc%d.hdr -o /run/cc%d.out -X PUT --unix-socket "
        .. "/run/zmesh/zmesh.sock -H 'Content-Type: application/json' --data-binary @/run/cc%d.json "
        .. "http://zmesh/v1/nrs/cc%d &", c, c, c, k)
    end
    for _, key in ipairs(keys) do key:close() end
    S:sh("n1", table.concat(cmds, " ") .. " wait")
    local last = {}
    for c = 1, 20 do
      local hdr = S:sh("n1", "cat /run/cc" .. c .. ".hdr"):lower()
      assert.matches("http/1.1 200", hdr)
      local job = tonumber(hdr:match("x%-zmesh%-job: (%d+)"))
      local k = (c % 2) + 1
      if not last[k] or job > last[k].job then last[k] = { job = job, cfg = variants[c] } end
    end
    local addrs, ports = {}, {}
    for k = 1, 2 do
      local status, res = S:api("n1", "GET", "/v1/nrs/cc" .. k)
      assert.equal(200, status)
      local have, want = {}, {}
      for _, p in ipairs(res.wireguard.peers) do have[#have + 1] = p.public_key end
      for _, p in ipairs(last[k].cfg.peers) do want[#want + 1] = p.wireguard_public_key end
      table.sort(have)
      table.sort(want)
      assert.same(want, have, "cc" .. k .. " holds the config of its last job")
      addrs[S:sh("n1", "ip -n n-cc" .. k .. " -4 -o addr show public | awk '{print $4}'")] = true
      ports[res.wireguard.listen_port] = true
    end
    local n_addrs, n_ports = 0, 0
    for _ in pairs(addrs) do n_addrs = n_addrs + 1 end
    for _ in pairs(ports) do n_ports = n_ports + 1 end
    assert.equal(2, n_addrs)
    assert.equal(2, n_ports)
  end)

  it("repairs drift within one interval: a deleted route, a killed wireguard-go, a flipped nft rule", function()
    local S = new_sim("d")
    finally(teardown(S))
    local facts = nodes_with_daemons(S, 1)
    local cfg = nrconf.make(facts.n1, "dr1", 1, 2)
    assert.equal(200, (S:api("n1", "PUT", "/v1/nrs/dr1", cfg)))
    local function repairs()
      local _, text = S:api("n1", "GET", "/metrics")
      local n = 0
      for v in text:gmatch('zmesh_repairs_total{[^}]*net_id="dr1"[^}]*} (%d+)') do n = n + tonumber(v) end
      return n
    end
    local before = repairs()
    -- A route deleted behind its back.
    assert(S:exec("n1", "n-dr1", "ip route del 10.1.0.0/16"))
    local took = within(3 * INTERVAL, function()
      return (S:exec("n1", "n-dr1", "ip route show 10.1.0.0/16")):match("dev w%-dr1") ~= nil
    end, "route put back")
    io.write(string.format("\n# drift repaired: route %.2f s", took))
    -- Its wireguard-go killed.
    local pid = S:sh("n1", "pgrep -x wireguard-go --nslist mnt --ns " .. S.nodes.n1.pid)
    S:sh("n1", "kill -9 " .. pid)
    took = within(3 * INTERVAL + 2, function()
      local p = S:sh("n1", "pgrep -x wireguard-go --nslist mnt --ns " .. S.nodes.n1.pid)
      local _, ok = S:sh("n1", "wg show w-dr1 peers")
      return p:match("^%d+$") and p ~= pid and ok
    end, "wireguard-go restarted")
    io.write(string.format(", wireguard-go %.2f s", took))
    -- The input diode turned into accept, its comment kept.
    local handle = S:exec("n1", "n-dr1", "nft -a list chain inet zmesh input"):match(
      'comment "input diode" # handle (%d+)')
    assert.truthy(handle)
    assert(S:exec("n1", "n-dr1", "nft replace rule inet zmesh input handle " .. handle
      .. " iifname public counter accept comment '\"input diode\"'"))
    took = within(3 * INTERVAL, function()
      local text = S:exec("n1", "n-dr1", "nft list chain inet zmesh input")
      return text:match('iifname "public" counter packets %d+ bytes %d+ drop comment "input diode"') ~= nil
    end, "nft rule put back")
    io.write(string.format(", nft rule %.2f s\n", took))
    assert.is_true(repairs() >= before + 3)
    local log = S:sh("n1", "cat /run/zmesh-daemon.log")
    assert.matches("repaired NR dr1", log, 1, true)
  end)

  it("restarts under traffic without losing a packet", function()
    local S = new_sim("t")
    finally(teardown(S))
    local facts = nodes_with_daemons(S, 2)
    local configs = mesh_configs(facts, 2)
    provision(S, configs, 2)
    all_pairs(S, 2)
    -- 1000 pings at 10 ms, while n1's daemon stops and starts twice.
    local node = S.nodes.n1
    S:sh("n1", "ip netns exec c1 ping -c 1000 -i 0.01 -W 1 10.1.2.10 > /run/ping.out 2>&1 &")
    testns.sh("sleep 1")
    for _ = 1, 2 do
      S:daemon_stop("n1", "TERM")
      testns.sh("sleep 0.5")
      S:daemon_start("n1")
      testns.sh("sleep 1.5")
    end
    within(30, function()
      return (S:sh("n1", "cat /run/ping.out")):match("packets transmitted") ~= nil
    end, "ping finished")
    local out = S:sh("n1", "cat /run/ping.out")
    local sent, got = out:match("(%d+) packets transmitted, (%d+) received")
    io.write(string.format("\n# daemon restarted twice under a 1000-packet ping: %s sent, %s received\n",
      sent, got))
    assert.equal("1000", sent)
    assert.equal("1000", got, out)
    local _ = node
  end)
end)
