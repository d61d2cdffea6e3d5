-- The daemon's side of the control plane (zmesh.control): revisions of
-- the node's keys become jobs of the daemon's queue, one pending job per
-- key (newer revisions replace a waiting job's parameters), delete
-- markers remove the NR, status goes back to the bucket without secrets,
-- and a node that was away applies only the newest revision.
local client = require "zmesh.control.client"
local control = require "zmesh.control"
local fake_nats = require "fake_nats"
local json = require "zmesh.json"
local kv = require "zmesh.control.kv"
local metrics = require "zmesh.daemon.metrics"

local SEALED = string.rep("A", 80)

local function fake_daemon(dir)
  local d = { jobs = {}, logs = {}, metrics = metrics.new(),
    cfg = { node_id = "n1", state_dir = dir, control = { urls = { "nats://fake:4222" }, nkey = "/x",
      bucket = "zmesh", retry_min = 0.25, retry_max = 5, status_interval = 10 } } }
  function d:log(fmt, ...) self.logs[#self.logs + 1] = string.format(fmt, ...) end
  function d:enqueue(job) self.jobs[#self.jobs + 1] = job return job end
  function d:status() return { nrs = {} } end
  return d
end

local function cfg(gen, peers)
  return json.encode({ net_id = "abc", node_id = "n1", network = "t", ip_range = "10.1.0.0/16",
    subnet = "10.1.1.0/24", wireguard_private_key = SEALED, wireguard_listen_port = 51820, generation = gen,
    peers = json.array(peers or {}) })
end

-- A new server with the bucket, and a daemon (state_dir DIR) whose agent
-- watches it: the server, an admin connection, the daemon's connection,
-- the fake daemon, its agent. Again on the same DIR: a bucket lost and
-- made again, seen by a restarted daemon.
local function agent_on_new_server(dir, opts)
  local srv = fake_nats.server()
  local admin = client.wrap(fake_nats.conn(srv))
  admin.state = "connected"
  assert(kv.ensure_bucket(admin, "zmesh"))
  local conn = fake_nats.conn(srv)
  local d = fake_daemon(dir)
  local a = control.start(d, { no_loop = true, connect = function() return client.wrap(conn) end,
    facts = opts and opts.facts })
  return srv, admin, conn, d, a
end

local function bucket_made_again(dir)
  local _, admin, conn, d, a = agent_on_new_server(dir)
  return admin, conn, d, a
end

local function setup(opts)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local srv, admin, conn, d, a = agent_on_new_server(dir, opts)
  local x = { dir = dir, srv = srv, admin = admin, conn = conn, d = d, a = a }
  function x.connect()
    conn:push({ kind = "connected", url = "nats://fake:4222" })
    a.cl:dispatch()
    a.cl:dispatch()
  end
  function x.pump() a.cl:dispatch() a.cl:dispatch() end
  function x.put(key, v) return assert(kv.put(admin, "zmesh", key, v)) end
  return x
end

local function finish(job, ok, err)
  job.started = true
  job.done({ ok = ok, result = ok and {} or nil, error = err })
end

describe("control agent", function()
  it("applies the newest of several revisions that arrive while its job waits", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", cfg(1))
    x.pump()
    assert.equal(1, #x.d.jobs)
    local job = x.d.jobs[1]
    assert.equal("nr.apply", job.entry)
    x.put("nr.n1.abc", cfg(2))
    x.put("nr.n1.abc", cfg(3))
    x.pump()
    assert.equal(1, #x.d.jobs, "one pending job per key")
    assert.equal(3, job.params.generation)
    finish(job, true)
    x.pump()
    local _, m = nil, x.d.metrics:render()
    assert.matches('zmesh_control_coalesced_total{net_id="abc"} 2', m, 1, true)
    local st = kv.decode(kv.get(x.admin, "zmesh", "status.n1.abc"))
    assert.equal(3, st.generation)
    assert.equal("ok", st.result)
    assert.is_nil(json.encode(st):find(SEALED, 1, true), "nothing secret in status")
    -- The record survives the daemon: the same revision is not applied again.
    local rec = json.decode(io.open(x.dir .. "/control.json"):read("a"))
    assert.equal(3, rec.data.keys.abc.generation)
  end)

  it("applies a revision that arrives while its job runs after that job, the newest only", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", cfg(1))
    x.pump()
    local job = x.d.jobs[1]
    job.started = true
    x.put("nr.n1.abc", cfg(2))
    x.put("nr.n1.abc", cfg(3))
    x.pump()
    assert.equal(1, #x.d.jobs)
    finish(job, true)
    assert.equal(2, #x.d.jobs)
    assert.equal(3, x.d.jobs[2].params.generation)
  end)

  it("removes the NR on a delete marker, and skips revisions it has seen", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", cfg(1))
    x.pump()
    finish(x.d.jobs[1], true)
    x.pump()
    assert(kv.delete(x.admin, "zmesh", "nr.n1.abc", { headers = { ["Zmesh-Generation"] = "2" } }))
    x.pump()
    assert.equal("nr.remove", x.d.jobs[2].entry)
    assert.same({ net_id = "abc" }, x.d.jobs[2].params)
    finish(x.d.jobs[2], true)
    x.pump()
    -- Its status goes too.
    assert.equal("delete", kv.get(x.admin, "zmesh", "status.n1.abc").op)
    -- A watch that starts over delivers the marker again: nothing to do.
    x.a.watch:start("test")
    x.pump()
    assert.equal(2, #x.d.jobs)
    -- Many revisions later the bucket is made again (revisions from 1) and
    -- the node is published anew: taken, although below the last seen.
    x.a.seen.abc = 40
    local admin, conn, d, a = bucket_made_again(x.dir)
    a.seen.abc = 40
    assert(kv.put(admin, "zmesh", "nr.n1.abc", cfg(5)))
    conn:push({ kind = "connected" })
    a.cl:dispatch()
    a.cl:dispatch()
    assert.equal(1, #d.jobs)
    assert.equal("nr.apply", d.jobs[1].entry)
  end)

  it("refuses a value for another node or NR, and says so in its status", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", (cfg(1):gsub('"node_id":"n1"', '"node_id":"n9"')))
    x.put("nr.n1.xyz", cfg(1))
    x.put("nr.n1.bad", "not json")
    x.pump()
    assert.equal(0, #x.d.jobs)
    local st = kv.decode(kv.get(x.admin, "zmesh", "status.n1.abc"))
    assert.equal("error", st.result)
    assert.matches("is for node n9, not n1", st.error)
    assert.matches("is for NR abc, not xyz", kv.decode(kv.get(x.admin, "zmesh", "status.n1.xyz")).error)
    assert.matches("not a JSON object", kv.decode(kv.get(x.admin, "zmesh", "status.n1.bad")).error)
  end)

  it("reports a failed apply and tries it again later", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", cfg(1))
    x.pump()
    finish(x.d.jobs[1], false, "wireguard_listen_port 51820: already used by NR zzz")
    x.pump()
    local st = kv.decode(kv.get(x.admin, "zmesh", "status.n1.abc"))
    assert.equal("error", st.result)
    assert.matches("already used", st.error)
    assert.equal(1, st.wanted.generation)
    assert.is_not_nil(x.a.retry.abc)
    x.a.retry.abc.at = 0
    x.a:tick()
    assert.equal(2, #x.d.jobs)
  end)

  it("after a time away, applies only the newest revision (the watch starts over)", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", cfg(1))
    x.pump()
    finish(x.d.jobs[1], true)
    x.pump()
    x.conn:push({ kind = "disconnected" })
    x.pump()
    assert.is_nil(x.a.watch.sid, "no backlog of the old consumer after a reconnect")
    x.conn.down = true
    for g = 2, 4 do x.put("nr.n1.abc", cfg(g)) end
    x.conn.down = false
    x.conn:push({ kind = "reconnected", url = "nats://fake:4222" })
    x.pump()
    assert.equal(2, #x.d.jobs)
    assert.equal(4, x.d.jobs[2].params.generation)
  end)

  it("forgets what it measured under the old generation once the new one is applied", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", cfg(1))
    x.pump()
    finish(x.d.jobs[1], true)
    x.a.reach.abc = { n2 = { reachable = true } }
    x.a.last_round = 1
    x.put("nr.n1.abc", cfg(2))
    x.pump()
    finish(x.d.jobs[2], true)
    assert.is_nil(x.a.reach.abc)
    assert.is_nil(x.a.last_round, "the next tick probes at once")
  end)

  it("does not apply again what an earlier daemon applied", function()
    local x = setup()
    x.connect()
    x.put("nr.n1.abc", cfg(1))
    x.pump()
    finish(x.d.jobs[1], true)
    x.pump()
    -- A new daemon, same state_dir.
    local conn = fake_nats.conn(x.srv)
    local d = fake_daemon(x.dir)
    local a = control.start(d, { no_loop = true, connect = function() return client.wrap(conn) end })
    conn:push({ kind = "connected" })
    a.cl:dispatch()
    a.cl:dispatch()
    assert.equal(0, #d.jobs)
  end)

  it("applies a newer generation from a bucket made again, whose revisions start over", function()
    local x = setup()
    x.connect()
    for gen = 1, 3 do
      x.put("nr.n1.abc", cfg(gen))
      x.pump()
      finish(x.d.jobs[#x.d.jobs], true)
      x.pump()
    end
    local applied = #x.d.jobs
    -- The bucket is lost and made again: a new daemon (same state_dir) on
    -- a new server sees revision 1 again, with the next generation.
    local admin, conn, d, a = bucket_made_again(x.dir)
    assert(kv.put(admin, "zmesh", "nr.n1.abc", cfg(3)))
    conn:push({ kind = "connected" })
    a.cl:dispatch()
    a.cl:dispatch()
    assert.equal(0, #d.jobs, "the same generation again is not new")
    assert(kv.put(admin, "zmesh", "nr.n1.abc", cfg(4)))
    a.cl:dispatch()
    a.cl:dispatch()
    assert.equal(1, #d.jobs)
    assert.equal(4, d.jobs[1].params.generation)
    assert.is_true(applied >= 3)
  end)

  it("writes its facts at connect, and again when they change (a DHCP lease after the connection)", function()
    local facts = { node_id = "n1", public_key = "K", addresses = {} }
    local calls = 0
    local x = setup { facts = function() calls = calls + 1 return true, facts end }
    x.connect()
    x.pump()
    local e = kv.get(x.admin, "zmesh", "facts.n1")
    assert.same({}, kv.decode(e).addresses)
    local rev = e.revision
    -- Unchanged: nothing is written at the next round.
    x.a.last_round = 0
    x.a:tick()
    x.pump()
    assert.equal(rev, kv.get(x.admin, "zmesh", "facts.n1").revision)
    assert.equal(2, calls, "looked at again at the status round")
    -- The lease arrives: the next round writes it.
    facts.addresses = { "198.51.100.7/24" }
    x.a.last_round = 0
    x.a:tick()
    x.pump()
    e = kv.get(x.admin, "zmesh", "facts.n1")
    assert.same({ "198.51.100.7/24" }, kv.decode(e).addresses)
    assert.is_true(e.revision > rev)
  end)
end)
