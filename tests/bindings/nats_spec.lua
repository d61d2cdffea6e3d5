-- core.nats: conversion only. A caller's mistake raises and names the
-- field; a system failure returns nil, "ENAME: …", "ENAME" (and the
-- JetStream error code for JetStream's own errors). Without a server:
-- argument checks, refused connections, the background connection, nkeys.
-- With one (root: a nats-server in a namespace of this test, and the
-- client in a child `zmesh run` inside it): key-value calls, compare-and-
-- set, a consumer's deliveries through the eventfd, permissions, and a
-- connection closed under live subscriptions and calls.
local core = require "zmesh.core"
local fake_nats = require "fake_nats"
local json = require "zmesh.json"
local testns = require "testns"

local nats = core.nats
local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"

local function raises(msg, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error mentioning " .. msg)
  assert.matches(msg, tostring(err), 1, true)
end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp .. " && chmod 700 " .. tmp))

describe("core.nats", function()
  it("checks connect's options before anything is made", function()
    raises("unknown field 'server'", nats.connect, { server = "nats://a" })
    raises("field 'servers': a list of nats:// URLs expected", nats.connect, {})
    raises("field 'servers': must list 1..16 URLs", nats.connect, { servers = {} })
    raises("field 'servers': each must be nats://HOST[:PORT]", nats.connect, { servers = { "http://a" } })
    raises("field 'password_file': user and password_file go together", nats.connect,
      { servers = { "nats://a" }, user = "u" })
    raises("one of user, nkey_seed_file and creds_file", nats.connect,
      { servers = { "nats://a" }, nkey_seed_file = "/x", creds_file = "/y" })
    raises("field 'timeout'", nats.connect, { servers = { "nats://a" }, timeout = 0 })
    raises("field 'inbox_prefix': not a NATS subject", nats.connect, { servers = { "nats://a" }, inbox_prefix = "a b" })
    raises("field 'reconnect_max': below reconnect_min", nats.connect,
      { servers = { "nats://a" }, reconnect_min = 500, reconnect_max = 100 })
  end)

  it("returns the failure of a refused connection", function()
    local c, err, ename = nats.connect { servers = { "nats://127.0.0.1:1" }, timeout = 500 }
    assert.is_nil(c)
    assert.equal("ECONNREFUSED", ename)
    assert.matches("^ECONNREFUSED: No server available for connection", err)
    c, err, ename = nats.connect { servers = { "nats://127.0.0.1:1" }, nkey_seed_file = tmp .. "/none" }
    assert.is_nil(c)
    assert.equal("ENOENT", ename)
    assert.matches(tmp .. "/none", err, 1, true)
  end)

  it("connects in the background: an object at once, calls failing until connected", function()
    local c = assert(nats.connect { servers = { "nats://127.0.0.1:1" }, background = true, timeout = 200,
      reconnect_min = 50, reconnect_max = 100 })
    assert.matches("^nats connection", tostring(c))
    assert.is_number(c:fd())
    local st = c:status()
    assert.truthy(st == "connecting" or st == "reconnecting", st)
    assert.is_table(c:events())
    local res, err, ename = c:js("stream_info", { stream = "KV_zmesh", timeout = 100 })
    assert.is_nil(res)
    assert.truthy(ename == "ENOTCONN" or ename == "ETIMEDOUT", err)
    raises("unknown field 'subj'", c.js, c, "publish", { subj = "a" })
    raises("field 'subject': not a NATS subject", c.js, c, "publish", { subject = "a.*" })
    raises("field 'stream': only A-Z a-z 0-9 _ - are allowed", c.js, c, "get_last", { stream = "a.b", subject = "x" })
    raises("field 'policy': all, last, new or last_per_subject", c.js, c, "add_consumer",
      { stream = "S", name = "n", filter = "a.>", deliver = "d", policy = "first" })
    raises("invalid option 'purge'", c.js, c, "purge", {})
    raises("field 'headers': a header value may not hold CR, LF or NUL", c.js, c, "publish",
      { subject = "a", headers = { X = "a\nb" } })
    local id = assert(c:js_async("publish", { subject = "a.b", data = "x", timeout = 100 }))
    assert.is_true(math.type(id) == "integer")
    c:close()
    c:close()
    raises("the connection is closed", c.fd, c)
    assert.same({}, c:events())
  end)

  it("makes nkey seeds only once, 0600, and reads their public keys", function()
    local path = tmp .. "/u.nk"
    local pub = assert(nats.nkey_create(path))
    assert.matches("^U[A-Z2-7]+$", pub)
    assert.equal(56, #pub)
    assert.equal(pub, nats.nkey_public(path))
    local f = assert(io.open(path))
    local seed = f:read("l")
    f:close()
    assert.matches("^SU[A-Z2-7]+$", seed)
    assert.equal("600", (testns.sh("stat -c %a " .. path)))
    local ok, err, ename = nats.nkey_create(path)
    assert.is_nil(ok)
    assert.equal("EEXIST", ename)
    assert.matches(path, err, 1, true)
    local bad = tmp .. "/bad.nk"
    f = assert(io.open(bad, "w"))
    f:write(seed:sub(1, 20) .. (seed:sub(21, 21) == "A" and "B" or "A") .. seed:sub(22) .. "\n")
    f:close()
    ok, err, ename = nats.nkey_public(bad)
    assert.is_nil(ok)
    assert.equal("EINVAL", ename)
    assert.matches("not a valid NATS user seed", err)
  end)

  it("lists each JetStream op's fields, the very lists the fake checks", function()
    for op, fields in pairs(nats.js_fields) do
      assert.same(fields, fake_nats.FIELDS[op], op)
    end
    for op in pairs(fake_nats.FIELDS) do assert.is_table(nats.js_fields[op], op) end
    assert.is_table(core.contract["nats.connect"])
  end)

  local root = (testns.sh("id -u")) == "0"
  local it_root = root and it or pending
  it_root("talks JetStream to a real server in a namespace of its own", function()
    local ns = testns.name("nats")
    finally(function()
      testns.sh("ip netns pids " .. ns .. " 2>/dev/null | xargs -r kill -KILL")
      testns.cleanup()
    end)
    assert(core.netns.create(ns))
    assert(core.link.set { ns = ns, name = "lo", up = true })
    local admin = assert(nats.nkey_create(tmp .. "/admin.nk"))
    local node = assert(nats.nkey_create(tmp .. "/n1.nk"))
    local conf = string.format([[
listen: 127.0.0.1:4222
jetstream { store_dir: %q }
accounts { ZM { jetstream: enabled, users: [
  { nkey: %q }
  { nkey: %q, permissions: { publish: { allow: ["$KV.zmesh.status.n1.>", "$JS.API.CONSUMER.CREATE.KV_zmesh.*.$KV.zmesh.nr.n1.>"] },
                             subscribe: { allow: ["_INBOX_n1.>"] } } }
] } }
]], tmp .. "/js", admin, node)
    assert(core.fs.write(tmp .. "/s.conf", conf, tonumber("600", 8)))
    testns.sh(string.format("ip netns exec %s setsid nats-server -c %s > %s/s.log 2>&1 < /dev/null &", ns,
      tmp .. "/s.conf", tmp))
    local script = [=[
local core = require "zmesh.core"
local json = require "zmesh.json"
local dir = ...
local r = {}
local c
-- A cold first start (JetStream making its store) may take seconds.
for _ = 1, 600 do
  c = core.nats.connect { servers = { "nats://127.0.0.1:4222" }, nkey_seed_file = dir .. "/admin.nk" }
  if c then break end
  os.execute("sleep 0.05")
end
r.status = c:status()
r.stream = c:js("add_stream", { name = "KV_zmesh", subjects = { "$KV.zmesh.>" }, max_msgs_per_subject = 5,
  allow_direct = true, deny_purge = true, deny_delete = true })
r.put = c:js("publish", { subject = "$KV.zmesh.nr.n1.a", data = "v1",
  headers = { ["Nats-Expected-Last-Subject-Sequence"] = "0" } })
r.cas = table.pack(c:js("publish", { subject = "$KV.zmesh.nr.n1.a", data = "v2",
  headers = { ["Nats-Expected-Last-Subject-Sequence"] = "0" } }))
r.rollup = table.pack(c:js("publish", { subject = "$KV.zmesh.x", data = "", headers = { ["Nats-Rollup"] = "all" } }))
r.get = c:js("get_last", { stream = "KV_zmesh", subject = "$KV.zmesh.nr.n1.a" })
r.missing = table.pack(c:js("get_last", { stream = "KV_zmesh", subject = "$KV.zmesh.nope" }))
-- A node's connection, in the background, driven by its eventfd.
local n = assert(core.nats.connect { servers = { "nats://127.0.0.1:4222" }, nkey_seed_file = dir .. "/n1.nk",
  inbox_prefix = "_INBOX_n1", background = true })
local events = {}
local function drain(ms)
  local deadline = os.time() + ms / 1000 + 1
  repeat
    if n:wait(100) then for _, e in ipairs(n:events()) do events[#events + 1] = e end end
  until os.time() > deadline
end
local sid
for _ = 1, 50 do
  drain(100)
  if n:status() == "connected" then break end
end
sid = n:subscribe("_INBOX_n1.w")
n:js_async("add_consumer", { stream = "KV_zmesh", name = "w1", filter = "$KV.zmesh.nr.n1.>", deliver = "_INBOX_n1.w",
  policy = "last_per_subject", heartbeat = 500, inactive = 5000 })
n:js_async("add_consumer", { stream = "KV_zmesh", name = "w2", filter = "$KV.zmesh.nr.n2.>", deliver = "_INBOX_n1.w2",
  timeout = 800 })
n:js_async("publish", { subject = "$KV.zmesh.status.n2.a", data = "forged", timeout = 800 })
drain(1500)
r.events = events
r.sid = sid
-- Closed with a live subscription and a call in flight.
n:js_async("stream_info", { stream = "KV_zmesh", timeout = 3000 })
n:close()
c:close()
print(json.encode(r))
]=]
    assert(core.fs.write(tmp .. "/client.lua", script, tonumber("600", 8)))
    local out, ok = testns.sh(string.format("ip netns exec %s %s run %s %s", ns, BIN, tmp .. "/client.lua", tmp))
    assert.is_true(ok, out)
    local r = json.decode(out:match("(%b{})%s*$"))
    assert.equal("connected", r.status)
    assert.is_false(r.stream.allow_rollup)
    assert.is_true(r.stream.deny_purge)
    assert.equal(1, r.put.seq)
    assert.equal("ESTALE", r.cas[3])
    assert.equal(10071, r.cas[4])
    assert.matches("wrong last sequence: 1", r.cas[2])
    assert.equal("EIO", r.rollup[3])
    assert.matches("rollup not permitted", r.rollup[2])
    assert.equal("v1", r.get.data)
    assert.equal(1, r.get.seq)
    assert.equal("ENOENT", r.missing[3])
    local kinds, msgs, heartbeats, errors, done = {}, {}, 0, {}, {}
    for _, e in ipairs(r.events) do
      kinds[e.kind] = true
      if e.kind == "msg" and e.headers.Status == "100" then heartbeats = heartbeats + 1
      elseif e.kind == "msg" then msgs[#msgs + 1] = e
      elseif e.kind == "error" then errors[#errors + 1] = e.error
      elseif e.kind == "done" then done[#done + 1] = e end
    end
    assert.is_true(kinds.connected)
    assert.equal(1, #msgs)
    assert.equal("v1", msgs[1].data)
    assert.equal(r.sid, msgs[1].sid)
    assert.matches("^%$JS%.ACK%.KV_zmesh%.w1%.1%.1%.1%.%d+%.0$", msgs[1].reply)
    assert.is_true(heartbeats >= 1)
    assert.equal(3, #done)
    assert.is_true(done[1].ok)
    assert.equal(1, done[1].result.num_pending)
    assert.is_false(done[2].ok)
    assert.is_false(done[3].ok)
    local text = table.concat(errors, "\n")
    assert.matches('Permissions Violation for Publish to "$JS.API.CONSUMER.CREATE.KV_zmesh.w2.$KV.zmesh.nr.n2.>"', text, 1, true)
    assert.matches('Permissions Violation for Publish to "$KV.zmesh.status.n2.a"', text, 1, true)
  end)
end)
