-- `zmesh net publish` (zmesh.net.publish) against the in-memory
-- JetStream: generations, the compare-and-set claim on the network key,
-- stale files refused, two publishes at once never mixed, keys of nodes
-- that left deleted; and the server configuration generator's users and
-- permissions (zmesh.control.serverconf).
local client = require "zmesh.control.client"
local fake_nats = require "fake_nats"
local json = require "zmesh.json"
local kv = require "zmesh.control.kv"
local publish = require "zmesh.net.publish"
local serverconf = require "zmesh.control.serverconf"

local function network(nodes)
  local n = { name = "demo", net_id = "abc", nodes = {} }
  for i, id in ipairs(nodes) do n.nodes[i] = { node_id = id } end
  return n
end

local function configs(n, tag)
  local out = {}
  for _, node in ipairs(n.nodes) do out[node.node_id] = { net_id = n.net_id, node_id = node.node_id, tag = tag } end
  return out
end

local function conn_of(srv)
  local cl = client.wrap(fake_nats.conn(srv))
  cl.state, cl.timeout, cl.patience = "connected", 1000, 0
  return cl
end

local function run(cl, n, tag, p)
  local hooks = { claimed = function(gen, token) n.published = { generation = gen, claim = token } end }
  local ok, res = pcall(publish.to_bucket, cl, "zmesh", n, configs(n, tag), p or {}, hooks)
  if ok then n.published = { generation = res.generation } end
  return ok, res
end

local function keys(cl)
  local out = {}
  for k, e in pairs(assert(kv.snapshot(cl, "zmesh", "nr.*.abc"))) do
    out[k] = { gen = tonumber(e.headers["Zmesh-Generation"]), op = e.op, tag = (kv.decode(e) or {}).tag }
  end
  return out
end

describe("net publish", function()
  it("writes every node's config at the next generation and marks the network published", function()
    local srv = fake_nats.server()
    local cl = conn_of(srv)
    local n = network({ "n1", "n2" })
    local ok, res = run(cl, n, "x")
    assert.is_true(ok, tostring(res))
    assert.equal(1, res.generation)
    assert.is_true(res.bucket_made)
    local k = keys(cl)
    assert.same({ gen = 1, op = "put", tag = "x" }, k["nr.n1.abc"])
    assert.equal(1, json.decode(kv.get(cl, "zmesh", "nr.n2.abc").value).generation)
    local netv = kv.decode(kv.get(cl, "zmesh", "net.abc"))
    assert.equal("published", netv.state)
    assert.same({ "n1", "n2" }, netv.nodes)
    ok, res = run(cl, n, "y")
    assert.is_true(ok, tostring(res))
    assert.equal(2, res.generation)
  end)

  it("deletes the keys of nodes that left, with the generation on the marker", function()
    local srv = fake_nats.server()
    local cl = conn_of(srv)
    local n = network({ "n1", "n2", "n3" })
    assert(run(cl, n, "x"))
    table.remove(n.nodes, 2)
    local ok, res = run(cl, n, "x")
    assert.is_true(ok, tostring(res))
    assert.equal(1, res.deleted)
    assert.same({ "n2" }, res.removed_nodes)
    local k = keys(cl)
    assert.equal("delete", k["nr.n2.abc"].op)
    assert.equal(2, k["nr.n2.abc"].gen)
    -- Not deleted twice.
    ok, res = run(cl, n, "x")
    assert.equal(0, res.deleted)
  end)

  it("refuses a stale file: someone else published since", function()
    local srv = fake_nats.server()
    local cl = conn_of(srv)
    local mine = network({ "n1" })
    assert(run(cl, mine, "a"))
    local theirs = json.decode(json.encode(mine))
    assert(run(cl, theirs, "b"))
    local ok, err = run(cl, mine, "a")
    assert.is_false(ok)
    assert.matches("^conflict: network demo is at generation 2 in bucket zmesh", err)
    assert.matches("someone else published since", err)
    assert.equal("b", keys(cl)["nr.n1.abc"].tag)
    -- Unless forced.
    ok = run(cl, mine, "a", { force = true })
    assert.is_true(ok)
    assert.equal("a", keys(cl)["nr.n1.abc"].tag)
  end)

  it("of two publishes from the same generation, one wins the claim and the other writes nothing", function()
    local srv = fake_nats.server()
    local cl1, cl2 = conn_of(srv), conn_of(srv)
    local base = network({ "n1", "n2" })
    assert(run(cl1, base, "base"))
    local a, b = json.decode(json.encode(base)), json.decode(json.encode(base))
    -- b reads the network key, then a claims and writes everything, then b claims.
    local real_get = kv.get
    local paused
    kv.get = function(c, bucket, key, o)
      local e = real_get(c, bucket, key, o)
      if c == cl2 and key == "net.abc" and not paused then
        paused = true
        assert(run(cl1, a, "a"))
      end
      return e
    end
    local ok, err = run(cl2, b, "b")
    kv.get = real_get
    assert.is_false(ok)
    assert.matches("^conflict: another publish of network demo won: the bucket now holds generation 2", err)
    local k = keys(cl1)
    assert.same({ gen = 2, op = "put", tag = "a" }, k["nr.n1.abc"])
    assert.same({ gen = 2, op = "put", tag = "a" }, k["nr.n2.abc"])
  end)

  it("leaves the network file of the publish that lost the claim as it was", function()
    local fake = require("fake_keys").install()
    local net = require "zmesh.net"
    local fleet = require "zmesh.control.fleet"
    local build = dofile("tests/fixtures/net/build.lua")
    local srv = fake_nats.server()
    local cl1, cl2 = conn_of(srv), conn_of(srv)
    local path = os.tmpname()
    net.save(build.network(net, { "pub4", "pub4" }, fake), path)
    local real_connect, real_get = fleet.connect, kv.get
    fleet.connect = function() return cl2, "zmesh" end
    cl2.close = function() end
    local first = assert(publish.run({ file = path }))
    local f = io.open(path) local text = f:read("a") f:close()
    -- Another publish (from the same file) wins between our read and our claim.
    local other = net.load(path)
    kv.get = function(c, bucket, key, o)
      local e = real_get(c, bucket, key, o)
      if c == cl2 and key == kv.net_key(other.net_id) and not other.done then
        other.done = true
        assert(run(cl1, other, "other"))
      end
      return e
    end
    local ok, err = pcall(publish.run, { file = path })
    fleet.connect, kv.get = real_connect, real_get
    assert.is_false(ok)
    assert.matches("^conflict: ", err)
    f = io.open(path) local after = f:read("a") f:close()
    os.remove(path)
    assert.equal(text, after)
    assert.equal(first.generation, 1)
  end)

  -- Two publishes, a and b, of one network from generation 1, as
  -- coroutines on two connections. Each of PAUSES {who, key, say, after,
  -- taken} makes that publish's put of KEY yield SAY once, before the put
  -- (or AFTER it); TAKEN: the put is taken whatever revision it expected,
  -- as a clustered nats-server before 2.9.21 may take two compare-and-sets
  -- made at the same moment (issue 4320). kv.put is put back however the
  -- test ends.
  local function two_publishes(pauses)
    local srv = fake_nats.server()
    local cl = { a = conn_of(srv), b = conn_of(srv) }
    local base = network({ "n1", "n2", "n3" })
    assert(run(cl.a, base, "base"))
    local n = { a = json.decode(json.encode(base)), b = json.decode(json.encode(base)) }
    local real_put = kv.put
    finally(function() kv.put = real_put end)
    kv.put = function(c, bucket, key, data, o)
      local hit
      for _, p in ipairs(pauses) do
        if not p.done and cl[p.who] == c and p.key == key then hit = p break end
      end
      if hit then hit.done = true end
      if hit and not hit.after then coroutine.yield(hit.say) end
      if hit and hit.taken then o = { headers = o.headers, timeout = o.timeout } end
      local rev, err, kind = real_put(c, bucket, key, data, o)
      if hit and hit.after then coroutine.yield(hit.say) end
      return rev, err, kind
    end
    local co = {}
    for who in pairs(cl) do co[who] = coroutine.create(function() return run(cl[who], n[who], who) end) end
    return co, cl, n
  end

  local function all_of_a(cl)
    for _, id in ipairs({ "n1", "n2", "n3" }) do
      assert.same({ gen = 2, op = "put", tag = "a" }, keys(cl)["nr." .. id .. ".abc"], id)
    end
  end

  it("never mixes two publishes whose claims the server both took (nats-server issue 4320)", function()
    -- Both read generation 1; b claims 2 and writes n1; then a's claim,
    -- made at the same moment as b's, is taken too, and a runs to its
    -- end; then b goes on.
    local co, cl, n = two_publishes({
      { who = "a", key = "net.abc", say = "a claims", taken = true },
      { who = "b", key = "nr.n1.abc", say = "b wrote n1", after = true },
    })
    assert.same({ true, "a claims" }, { coroutine.resume(co.a) })
    assert.same({ true, "b wrote n1" }, { coroutine.resume(co.b) })
    local _, a_ok, a_res = coroutine.resume(co.a)
    local _, ok, err = coroutine.resume(co.b)
    assert.is_true(a_ok, tostring(a_res))
    assert.equal(2, a_res.generation)
    assert.is_false(ok)
    assert.matches("^conflict: superseded", err)
    all_of_a(cl.a)
    local net = kv.decode(kv.get(cl.a, "zmesh", "net.abc"))
    assert.equal("published", net.state)
    assert.equal(n.a.published.generation, net.generation)
  end)

  it("puts back a key the loser's compare-and-set took at the same moment as the winner's (issue 4320)", function()
    -- Both claims are taken (a's last: a wins); b's write of n2, made at
    -- the same moment as a's, is taken too and lands after it.
    local co, cl = two_publishes({
      { who = "a", key = "net.abc", say = "a claims", taken = true },
      { who = "b", key = "nr.n2.abc", say = "b at n2", taken = true },
      { who = "a", key = "nr.n3.abc", say = "a at n3" },
    })
    assert.same({ true, "a claims" }, { coroutine.resume(co.a) })
    assert.same({ true, "b at n2" }, { coroutine.resume(co.b) })
    assert.same({ true, "a at n3" }, { coroutine.resume(co.a) })
    local _, ok, err = coroutine.resume(co.b)
    local _, a_ok, a_res = coroutine.resume(co.a)
    assert.is_false(ok)
    assert.matches("^conflict: superseded", err)
    assert.is_true(a_ok, tostring(a_res))
    all_of_a(cl.a)
  end)

  it("stops as superseded when a newer generation reaches a key first, and never overwrites it", function()
    local srv = fake_nats.server()
    local cl = conn_of(srv)
    local n = network({ "n1", "n2" })
    assert(run(cl, n, "old"))
    -- A newer publish (generation 3) wrote n2 while this one (2) runs.
    local real_put = kv.put
    kv.put = function(c, bucket, key, data, o)
      if key == "nr.n1.abc" and not n.raced then
        n.raced = true
        assert(real_put(c, bucket, "nr.n2.abc", json.encode({ tag = "newer" }),
          { headers = { ["Zmesh-Generation"] = "3" } }))
      end
      return real_put(c, bucket, key, data, o)
    end
    local ok, err = run(cl, n, "mid")
    kv.put = real_put
    assert.is_false(ok)
    assert.matches("^conflict: superseded: nr.n2.abc holds generation 3", err)
    assert.equal("newer", keys(cl)["nr.n2.abc"].tag)
  end)

  it("goes on over its own claim when its earlier publish did not finish", function()
    local srv = fake_nats.server()
    local cl = conn_of(srv)
    local n = network({ "n1" })
    assert(run(cl, n, "x"))
    -- The next publish claims generation 2, then the cluster goes away.
    local real_snapshot = kv.snapshot
    kv.snapshot = function() return nil, "gone", "unavailable" end
    local ok, err = run(cl, n, "y")
    kv.snapshot = real_snapshot
    assert.is_false(ok)
    assert.matches("gone", err)
    assert.equal("publishing", kv.decode(kv.get(cl, "zmesh", "net.abc")).state)
    ok, err = run(cl, n, "y")
    assert.is_true(ok, tostring(err))
    assert.equal(3, err.generation)
  end)
end)

describe("nats-config", function()
  it("gives each node a user that reads only nr.<id>.> and writes only its own status and facts", function()
    local p = serverconf.node_permissions("zmesh", "n1")
    assert.same({ "$KV.zmesh.status.n1.>", "$KV.zmesh.facts.n1",
      "$JS.API.CONSUMER.CREATE.KV_zmesh.*.$KV.zmesh.nr.n1.>" }, p.publish)
    assert.same({ "_INBOX_n1.>" }, p.subscribe)
    local servers = { serverconf.parse_server("nats1=203.0.113.201"), serverconf.parse_server("nats2=203.0.113.202:4333:6333") }
    assert.equal(4333, servers[2].port)
    assert.equal(6333, servers[2].cluster_port)
    local text = serverconf.render(servers[1], servers, { { node_id = "n1", nkey = "UN1" } }, "UADMIN",
      { route_secret = "s3cr3t", store_dir = "/var/lib/nats" })
    assert.matches('server_name: "nats1"', text, 1, true)
    assert.matches('store_dir: "/var/lib/nats/nats1"', text, 1, true)
    assert.matches('routes: ["nats-route://zmesh-route:s3cr3t@203.0.113.202:6333"]', text, 1, true)
    assert.matches('{ nkey: "UN1", permissions: { publish: { allow: ["$KV.zmesh.status.n1.>"', text, 1, true)
    assert.matches('{ nkey: "UADMIN", permissions: { publish: [">"], subscribe: [">"] } }', text, 1, true)
    assert.matches("jetstream: enabled", text, 1, true)
  end)

  it("never echoes credentials in a URL, and refuses a timeout that is not seconds", function()
    local fleet = require "zmesh.control.fleet"
    local ok, err = pcall(fleet.urls, { "nats://u:hunter2@203.0.113.201:4222" })
    assert.is_false(ok)
    assert.not_matches("hunter2", err, 1, true)
    assert.matches("nats[1] 'nats://(credentials, not shown)@203.0.113.201:4222': holds credentials", err, 1, true)
    for _, t in ipairs({ "abc", 0, -1, 1e9 }) do
      ok, err = pcall(fleet.connect, { nats = "nats://203.0.113.201:4222", timeout = t })
      assert.is_false(ok)
      assert.matches("^timeout .*must be a number of seconds", err)
    end
  end)

  it("names a bad server spec", function()
    assert.has_error(function() serverconf.parse_server("nats1") end,
      "server 'nats1': must be NAME=HOST[:PORT[:CLUSTER_PORT]]")
    assert.has_error(function() serverconf.parse_server("a=h:99999") end, "server 'a=h:99999': port must be 1..65535")
  end)
end)
