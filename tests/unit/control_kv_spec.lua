-- The bucket's conventions (zmesh.control.kv) and the client's event
-- dispatch, against the in-memory JetStream of tests/lib/fake_nats.
local client = require "zmesh.control.client"
local fake_nats = require "fake_nats"
local kv = require "zmesh.control.kv"

local function new()
  local srv = fake_nats.server()
  local cl = client.wrap(fake_nats.conn(srv))
  cl.state = "connected"
  assert(kv.ensure_bucket(cl, "zmesh", { replicas = 1 }))
  return srv, cl
end

describe("control.kv", function()
  it("lays keys out as the NATS clients do", function()
    assert.equal("KV_zmesh", kv.stream("zmesh"))
    assert.equal("$KV.zmesh.nr.n1.abc", kv.subject("zmesh", kv.nr_key("n1", "abc")))
    assert.equal("nr.n1.abc", kv.key_of("zmesh", "$KV.zmesh.nr.n1.abc"))
    assert.is_nil(kv.key_of("zmesh", "$KV.other.nr.n1.abc"))
    assert.is_true(kv.valid_key("status.n-1_x.abc"))
    assert.is_false(kv.valid_key("nr..abc"))
    assert.is_false(kv.valid_key("nr.*"))
    assert.is_false(kv.valid_bucket("a.b"))
  end)

  it("reads revisions and pending counts from a delivery's reply subject (both formats)", function()
    local a = kv.ack_info("$JS.ACK.KV_zmesh.zw1.1.17.3.1796169626969046696.2")
    assert.same({ stream = "KV_zmesh", consumer = "zw1", delivered = 1, revision = 17, dseq = 3, pending = 2 }, a)
    local b = kv.ack_info("$JS.ACK.hub.ACCHASH.KV_zmesh.zw1.1.18.4.1796169626969046696.0.tok")
    assert.equal(18, b.revision)
    assert.equal(4, b.dseq)
    assert.equal(0, b.pending)
    assert.is_nil(kv.ack_info("_INBOX.x"))
  end)

  it("puts with compare-and-set: a stale revision is a conflict and writes nothing", function()
    local _, cl = new()
    local r1 = assert(kv.put(cl, "zmesh", "net.abc", "one", { expect = 0 }))
    local rev, err, kind = kv.put(cl, "zmesh", "net.abc", "two", { expect = 0 })
    assert.is_nil(rev)
    assert.equal("conflict", kind)
    assert.matches("wrong last sequence", err)
    assert.equal("one", kv.get(cl, "zmesh", "net.abc").value)
    local r2 = assert(kv.put(cl, "zmesh", "net.abc", "two", { expect = r1 }))
    assert.is_true(r2 > r1)
    assert.equal(r2, kv.get(cl, "zmesh", "net.abc").revision)
  end)

  it("deletes with a marker that reads as a delete, and tells a missing key apart", function()
    local _, cl = new()
    assert.is_false(kv.get(cl, "zmesh", "nr.n1.abc"))
    assert(kv.put(cl, "zmesh", "nr.n1.abc", "{}"))
    assert(kv.delete(cl, "zmesh", "nr.n1.abc", { headers = { ["Zmesh-Generation"] = "3" } }))
    local e = kv.get(cl, "zmesh", "nr.n1.abc")
    assert.equal("delete", e.op)
    assert.equal("3", e.headers["Zmesh-Generation"])
    assert.is_nil(kv.decode(e))
  end)

  it("snapshots the newest entry of every matching key, markers included", function()
    local _, cl = new()
    assert(kv.put(cl, "zmesh", "nr.n1.abc", '{"v":1}'))
    assert(kv.put(cl, "zmesh", "nr.n1.abc", '{"v":2}'))
    assert(kv.put(cl, "zmesh", "nr.n2.abc", '{"v":3}'))
    assert(kv.put(cl, "zmesh", "nr.n2.xyz", '{"v":4}'))
    assert(kv.delete(cl, "zmesh", "nr.n3.abc"))
    local snap = assert(kv.snapshot(cl, "zmesh", "nr.*.abc"))
    assert.equal(2, kv.decode(snap["nr.n1.abc"]).v)
    assert.equal(3, kv.decode(snap["nr.n2.abc"]).v)
    assert.equal("delete", snap["nr.n3.abc"].op)
    assert.is_nil(snap["nr.n2.xyz"])
    assert.same({}, assert(kv.snapshot(cl, "zmesh", "status.*.abc")))
  end)

  it("makes the bucket strict: no rollups, no purges, direct gets, history kept", function()
    local srv, cl = new()
    local cfg = srv.streams.KV_zmesh.cfg
    assert.is_false(cfg.allow_rollup)
    assert.is_true(cfg.deny_purge)
    assert.is_true(cfg.allow_direct)
    assert.equal(kv.HISTORY, cfg.max_msgs_per_subject)
    assert.same({ "$KV.zmesh.>" }, cfg.subjects)
    local _, made = kv.ensure_bucket(cl, "zmesh")
    assert.is_false(made)
  end)

  it("turns a refused request into EACCES with the server's text", function()
    local srv, cl = new()
    srv.deny = function(_, op, a)
      if op == "publish" and a.subject:find("status.n2", 1, true) then
        return 'Permissions Violation for Publish to "' .. a.subject .. '"'
      end
    end
    local rev, err, kind = kv.put(cl, "zmesh", "status.n2.abc", "{}")
    assert.is_nil(rev)
    assert.equal("denied", kind)
    assert.matches("^EACCES: Permissions Violation for Publish to \"$KV.zmesh.status.n2.abc\"", err)
    assert(kv.put(cl, "zmesh", "status.n1.abc", "{}"))
  end)

  it("dispatches events: messages by subscription, results by call, state changes", function()
    local srv = fake_nats.server()
    local conn = fake_nats.conn(srv)
    local cl = client.wrap(conn)
    local seen = {}
    cl.on_state = function(s) seen[#seen + 1] = s end
    conn:push({ kind = "connected", url = "nats://x" })
    conn:push({ kind = "disconnected" })
    conn:push({ kind = "reconnected", url = "nats://y" })
    cl:dispatch()
    assert.same({ "connected", "disconnected", "reconnected" }, seen)
    assert.is_true(cl:connected())
    local got
    cl:call_async("stream_info", { stream = "KV_none" }, function(e) got = e end)
    cl:dispatch()
    assert.is_false(got.ok)
    assert.equal("ENOENT", got.ename)
    -- A handler that raises is logged, never raised.
    local logged
    cl.log = function(fmt, ...) logged = string.format(fmt, ...) end
    local sid = cl:subscribe("a.b", function() error("boom") end)
    conn:push({ kind = "msg", sid = sid, subject = "a.b", data = "" })
    assert.has_no.errors(function() cl:dispatch() end)
    assert.matches("boom", logged)
  end)
end)
