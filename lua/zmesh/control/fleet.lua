-- The user's side of the control plane: connecting the tool to NATS,
-- and reading the fleet back — `zmesh net check` (every NR pair:
-- reachable, round trip, path, from the published status),
-- `zmesh net graph --nats` (the live WireGuard edges) and
-- `zmesh net add-node --nats` (a node's facts from the bucket).
local client = require "zmesh.control.client"
local json = require "zmesh.json"
local kv = require "zmesh.control.kv"

local fleet = {}

-- How old (seconds) a WireGuard handshake may be for its edge to count as live.
fleet.LIVE_HANDSHAKE = 180

local function fail(field, value, why)
  error(string.format("%s %s: %s", field, require("zmesh.check").show(value), why), 0)
end

-- The NATS URLs of P.nats: a URL, a comma-separated list, or a list.
function fleet.urls(v)
  local out = {}
  local function add(s)
    for u in tostring(s):gmatch("[^,%s]+") do out[#out + 1] = u end
  end
  if type(v) == "table" then for _, s in ipairs(v) do add(s) end elseif v ~= nil then add(v) end
  if #out == 0 then fail("nats", v, "needs at least one nats://HOST[:PORT] URL") end
  for i, u in ipairs(out) do
    local rest = u:match("^nats://(.*)$")
    if rest and rest:find("@", 1, true) then
      -- Never echoed: what stands before the @ is a password.
      fail(string.format("nats[%d]", i), "nats://(credentials, not shown)@" .. rest:gsub("^.*@", ""),
        "holds credentials: give them with --nkey, --creds or a password file")
    end
    if not u:match("^nats://[%w%.%-%[%]:]+$") then fail(string.format("nats[%d]", i), u, "must be nats://HOST[:PORT]") end
  end
  return out
end

-- The parameters the NATS-using entry points take besides their own.
fleet.PARAMS = { nats = true, nkey = true, creds = true, user = true, password_file = true, bucket = true,
  timeout = true }

-- Connect the tool (synchronously). P: {nats, nkey | creds | user +
-- password_file (else $ZMESH_NATS_NKEY / $ZMESH_NATS_CREDS), bucket,
-- timeout (seconds)}. Returns the client and the bucket name.
function fleet.connect(p, core)
  local urls = fleet.urls(p.nats)
  local bucket = p.bucket or kv.DEFAULT_BUCKET
  if not kv.valid_bucket(bucket) then fail("bucket", bucket, "must be 1..48 of A-Z a-z 0-9 _ -") end
  local nkey = p.nkey or (not p.creds and not p.user and os.getenv("ZMESH_NATS_NKEY")) or nil
  local creds = p.creds or (not nkey and not p.user and os.getenv("ZMESH_NATS_CREDS")) or nil
  -- TIMEOUT: how long the tool waits for the cluster in all (a server
  -- lost, leaders being elected); each request waits 2 s of it.
  local patience = 30
  if p.timeout ~= nil then
    patience = tonumber(p.timeout)
    if not patience or patience <= 0 or patience ~= patience or patience > 3600 then
      fail("timeout", p.timeout, "must be a number of seconds, above 0 and at most 3600")
    end
  end
  -- No server answering yet (refused, timed out: one restarting) is
  -- waited for within TIMEOUT too; a refusal of the credentials is not.
  local deadline = kv.now() + patience
  local cl, err, ename
  repeat
    cl, err, ename = client.connect({ servers = urls, name = "zmesh-net", nkey_seed_file = nkey,
      creds_file = creds, user = p.user, password_file = p.password_file, timeout = 2000 }, core)
    local again = not cl and (ename == "ECONNREFUSED" or ename == "ETIMEDOUT" or ename == "ENOTCONN")
      and kv.now() + 0.5 < deadline
    if again then require("luv").sleep(500) end
  until not again
  if not cl then error("nats " .. table.concat(urls, ",") .. ": " .. tostring(err), 0) end
  cl.timeout, cl.patience = math.floor(math.min(patience, 2) * 1000), patience
  return cl, bucket
end

local function must(v, err, kind)
  if v == nil then error((kind == "unavailable" and "NATS: " or "") .. tostring(err), 0) end
  return v
end

-- Node ID's facts, as it published them (facts.<id>).
function fleet.facts(p, id)
  require("zmesh.check").node_id(id, "node")
  local cl, bucket = fleet.connect(p)
  local e = must(kv.retrying(kv.now() + cl.patience, kv.get, cl, bucket, kv.facts_key(id), { timeout = cl.timeout }))
  cl:close()
  local facts = kv.decode(e)
  if not facts then fail("node", id, "has published no facts in bucket " .. bucket .. " (is its daemon connected?)") end
  return facts
end

-- Every status of network NET_ID: {node_id → status document}.
function fleet.statuses(cl, bucket, net_id)
  local all = must(kv.retrying(kv.now() + cl.patience, kv.snapshot, cl, bucket, "status.*." .. net_id,
    { timeout = cl.timeout }))
  local out = {}
  for key, e in pairs(all) do
    local id = key:match("^status%.([^.]+)%.")
    local doc = kv.decode(e)
    if id and doc then
      doc.revision_of_status = e.revision
      out[id] = doc
    end
  end
  return out
end

local function num(v) return type(v) == "number" and v or nil end

-- A status not refreshed for this many of its node's status intervals is
-- stale: the node (or its daemon, or its link to NATS) is gone, and what
-- it last measured is history, not the mesh's state.
fleet.STALE_INTERVALS = 3

local function stale(st, now)
  local at = num(st.updated_at)
  if not at then return false end
  local interval = num(st.status_interval) or 10
  return now - at > fleet.STALE_INTERVALS * interval
end

-- The fleet-wide matrix of network N: every pair of its NRs, from the
-- status their daemons published. Returns a report (see `net check`).
function fleet.check(n, p)
  local cl, bucket = fleet.connect(p)
  local netv = kv.decode(must(kv.retrying(kv.now() + cl.patience, kv.get, cl, bucket, kv.net_key(n.net_id),
    { timeout = cl.timeout })) or nil)
  local statuses = fleet.statuses(cl, bucket, n.net_id)
  cl:close()
  local r = fleet.matrix(n, netv, statuses, os.time())
  r.bucket = bucket
  return r
end

-- The report of fleet.check from what it read: NETV the network key's
-- value (or nil), STATUSES { [node_id] = status document }, NOW in
-- seconds (os.time, as the nodes stamp updated_at).
function fleet.matrix(n, netv, statuses, now)
  local published = netv and math.tointeger(netv.generation) or nil
  local ids = {}
  for _, node in ipairs(n.nodes) do ids[#ids + 1] = node.node_id end
  local nodes, pairs_, problems = {}, {}, {}
  local reachable, unknown = 0, 0
  for _, id in ipairs(ids) do
    local st = statuses[id]
    local row = { node_id = id }
    if not st then
      row.result = "no status"
      problems[#problems + 1] = id .. ": no status published"
    else
      row.generation, row.result, row.error = st.generation, st.result, st.error
      row.age = num(st.updated_at) and (now - st.updated_at) or json.null
      row.aggregator, row.exit = st.aggregator, st.exit
      row.peers = st.peers
      row.stale = stale(st, now) or nil
      if row.stale then
        problems[#problems + 1] = string.format("%s: status %d s old, not refreshed for %d status intervals "
          .. "(node, daemon or its NATS link down?)", id, now - st.updated_at, fleet.STALE_INTERVALS)
      elseif st.result ~= "ok" then
        problems[#problems + 1] = string.format("%s: %s%s", id, tostring(st.result),
          type(st.error) == "string" and (": " .. st.error) or "")
      elseif published and st.generation ~= published then
        problems[#problems + 1] = string.format("%s: at generation %s, %d published", id, tostring(st.generation), published)
      end
    end
    nodes[#nodes + 1] = row
  end
  for _, a in ipairs(ids) do
    -- A stale node's measurements are not counted: they say how the mesh was.
    local st = statuses[a]
    local reach = st and not stale(st, now) and type(st.reach) == "table" and st.reach or {}
    for _, b in ipairs(ids) do
      if a ~= b then
        local r = reach[b]
        local cell = { from = a, to = b }
        if type(r) == "table" then
          cell.reachable, cell.rtt_ms, cell.path, cell.hops = r.reachable == true, num(r.rtt_ms), r.path, r.hops
          cell.age = num(r.at) and now - r.at or nil
          if cell.reachable then reachable = reachable + 1 end
        else
          cell.reachable = json.null
          unknown = unknown + 1
        end
        pairs_[#pairs_ + 1] = cell
      end
    end
  end
  local total = #ids * (#ids - 1)
  if reachable < total then
    problems[#problems + 1] = string.format("%d of %d pairs reachable%s", reachable, total,
      unknown > 0 and string.format(" (%d not measured yet)", unknown) or "")
  end
  return {
    network = n.name, net_id = n.net_id,
    generation = published or json.null, state = netv and netv.state or json.null,
    nodes = json.array(nodes), pairs = json.array(pairs_), total = total, reachable = reachable,
    problems = json.array(problems), ok = #problems == 0 and (netv ~= nil),
  }
end

-- The network as Graphviz DOT with its live edges: one edge per pair of
-- NRs that are WireGuard peers, solid and green with a recent handshake
-- (label: its age and the bytes both ways), dashed and red without.
function fleet.graph(n, p)
  local cl, bucket = fleet.connect(p)
  local statuses = fleet.statuses(cl, bucket, n.net_id)
  cl:close()
  local L = { "graph " .. string.format("%q", n.name) .. " {", "  graph [overlap=false];",
    "  node [fontname=\"Helvetica\"];" }
  local hidden = {}
  for _, node in ipairs(n.nodes) do
    if node.aggregators then hidden[node.node_id] = true end
  end
  for _, node in ipairs(n.nodes) do
    local id = node.node_id
    local st = statuses[id]
    local label = id .. (st and st.generation ~= nil and st.generation ~= json.null
      and ("\\ngen " .. tostring(st.generation)) or "\\nno status")
    L[#L + 1] = string.format("  %q [shape=%s%s, label=\"%s\"%s];", id, hidden[id] and "ellipse" or "box",
      hidden[id] and ", style=dashed" or "", label,
      (st and st.result ~= "ok") and ", color=red" or "")
  end
  local seen = {}
  for _, node in ipairs(n.nodes) do
    local a = node.node_id
    for _, peer in ipairs(statuses[a] and statuses[a].peers or {}) do
      local b = peer.node_id
      if type(b) == "string" and b ~= a then
        local k = a < b and (a .. " " .. b) or (b .. " " .. a)
        local age = num(peer.handshake_age)
        local live = age and age < fleet.LIVE_HANDSHAKE
        local prev = seen[k]
        if not prev or (live and not prev.live) then
          seen[k] = { a = a, b = b, live = live, age = age, rx = peer.rx_bytes, tx = peer.tx_bytes }
        end
      end
    end
  end
  local keys = {}
  for k in pairs(seen) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local e = seen[k]
    if e.live then
      L[#L + 1] = string.format("  %q -- %q [color=darkgreen, label=\"%ds, %s/%s B\"];", e.a, e.b, e.age,
        tostring(e.rx or 0), tostring(e.tx or 0))
    else
      L[#L + 1] = string.format("  %q -- %q [color=red, style=dashed, label=\"%s\"];", e.a, e.b,
        e.age and (e.age .. "s") or "no handshake")
    end
  end
  L[#L + 1] = "}"
  return table.concat(L, "\n") .. "\n"
end

return fleet
