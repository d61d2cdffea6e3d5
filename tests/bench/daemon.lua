-- The daemon, measured on a simulated node:
--  · boot restore of 50 NRs (2 peers and a container each) after a power
--    loss, against applying the same 50 NRs with one-shot commands in the
--    same run (target: restore under 5 s);
--  · the API round trip of a no-op apply (curl over the unix socket),
--    against the same no-op apply as a one-shot command (target: under
--    20 ms).
local json = require "zmesh.json"
local nrconf = require "nrconf"
local sim = require "zmesh.sim"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"
local NRS = 50

local S = sim.new { prefix = "zb" .. string.format("%x", os.time() % 0xfff) .. "d-", bin = BIN,
  backend = "userspace" }

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function put(path, text)
  local core = require "zmesh.core"
  assert(core.fs.write("/proc/" .. S.nodes.n1.pid .. "/root" .. path, text, tonumber("600", 8)))
end

local ok, err = pcall(function()
  S:internet()
  S:node { id = "n1", addr = "203.0.113.11/24", reconcile_interval = 5 }
  assert(S:call("n1", "node.start", {}))
  local facts = assert(S:call("n1", "node.facts", {}))
  local script, b1 = {}, nil
  for k = 1, NRS do
    local cfg = nrconf.make(facts, "b" .. k, k, 2, nil, { port = 51820 + k })
    b1 = b1 or json.encode(cfg)
    put("/run/b" .. k .. ".json", json.encode(cfg))
    put("/run/c" .. k .. ".json", json.encode({ net_id = "b" .. k, netns = "c" .. k,
      ip = "10." .. k .. ".1.10", create = true }))
    script[#script + 1] = string.format("%s call nr.apply - < /run/b%d.json > /dev/null && "
      .. "%s call container.attach - < /run/c%d.json > /dev/null", BIN, k, BIN, k)
  end
  -- Baseline: the same NRs and containers, one one-shot command each.
  local t0 = sim.now()
  local out, done = S:sh("n1", table.concat(script, " && "))
  assert(done, out)
  local oneshot = sim.now() - t0
  -- Power loss, the containers back (their runtime), the daemon started.
  S:power_loss("n1")
  local names = {}
  for k = 1, NRS do names[k] = "ip netns add c" .. k end
  assert(S:sh("n1", table.concat(names, " && ")))
  t0 = sim.now()
  S:daemon_start("n1", 60)
  local restore
  while sim.now() - t0 < 60 do
    local status, st = S:api("n1", "GET", "/v1/status")
    if status == 200 and st.converge ~= json.null and #st.pending_containers == 0 then
      restore = sim.now() - t0
      break
    end
  end
  assert(restore, "the boot restore did not finish")
  local up = S:sh("n1", "ip netns list | grep -c '^n-b'")
  assert(up == tostring(NRS), "only " .. up .. " NRs restored")
  print(string.format("boot restore of %d NRs after a power loss: %.2f s (target < 5 s); "
    .. "one-shot commands for the same: %.2f s; ratio %.2f", NRS, restore, oneshot, restore / oneshot))
  -- No-op apply: through the API, and one-shot (process start included).
  put("/run/b1.json", b1)   -- /run went with the power
  local api, direct = {}, {}
  for _ = 1, 15 do
    local t = S:sh("n1", "curl -s -o /dev/null -w '%{http_code} %{time_total}' -X PUT --unix-socket "
      .. "/run/zmesh/zmesh.sock -H 'Content-Type: application/json' --data-binary @/run/b1.json "
      .. "http://zmesh/v1/nrs/b1")
    local code, secs = t:match("^(%d+) ([%d.]+)$")
    assert(code == "200", "the no-op apply answered " .. t)
    api[#api + 1] = tonumber(secs)
    local t1 = sim.now()
    local o, applied = S:sh("n1", BIN .. " node apply /run/b1.json --direct > /dev/null")
    assert(applied, o)
    direct[#direct + 1] = sim.now() - t1
  end
  local a, d = median(api), median(direct)
  print(string.format("no-op apply, API round trip (curl): %.1f ms (target < 20 ms); one-shot `zmesh node "
    .. "apply --direct`: %.1f ms; ratio %.2f (median of 15)", a * 1000, d * 1000, a / d))
end)
S:destroy()
if not ok then
  io.stderr:write("bench daemon: ", tostring(err), "\n")
  os.exit(1)
end
