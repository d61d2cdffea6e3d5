-- The daemon's watch (zmesh.control.watch): the newest revision of every
-- key first, then changes; it starts over after a gap, a stopped
-- heartbeat or a failure (with a doubling delay), and a start over
-- delivers only the newest revisions.
local client = require "zmesh.control.client"
local fake_nats = require "fake_nats"
local kv = require "zmesh.control.kv"
local watch = require "zmesh.control.watch"

local function setup()
  local srv = fake_nats.server()
  local admin = client.wrap(fake_nats.conn(srv))
  admin.state = "connected"
  assert(kv.ensure_bucket(admin, "zmesh"))
  local conn = fake_nats.conn(srv)
  local cl = client.wrap(conn)
  cl.state = "connected"
  local t = 0
  local got, synced, logs = {}, 0, {}
  local w = watch.new { client = cl, bucket = "zmesh", filter = "nr.n1.>", inbox = "_INBOX_n1",
    on_entry = function(e) got[#got + 1] = e end, on_synced = function() synced = synced + 1 end,
    log = function(fmt, ...) logs[#logs + 1] = string.format(fmt, ...) end, now = function() return t end }
  return { srv = srv, admin = admin, conn = conn, cl = cl, w = w, got = got, logs = logs,
    synced = function() return synced end, advance = function(s) t = t + s end }
end

describe("control.watch", function()
  it("creates its consumer with the filter in the create call, delivering the last value per key", function()
    local x = setup()
    assert(kv.put(x.admin, "zmesh", "nr.n1.a", "a1"))
    assert(kv.put(x.admin, "zmesh", "nr.n1.a", "a2"))
    assert(kv.put(x.admin, "zmesh", "nr.n1.b", "b1"))
    assert(kv.put(x.admin, "zmesh", "nr.n2.a", "other"))
    x.w:start()
    x.cl:dispatch()
    local call = x.srv.calls[#x.srv.calls]
    assert.equal("add_consumer", call.op)
    assert.equal("$KV.zmesh.nr.n1.>", call.args.filter)
    assert.equal("last_per_subject", call.args.policy)
    assert.matches("^_INBOX_n1%.", call.args.deliver)
    assert.equal(2, #x.got)
    assert.equal("a2", x.got[1].value)
    assert.equal("b1", x.got[2].value)
    assert.equal(1, x.synced())
    assert(kv.put(x.admin, "zmesh", "nr.n1.a", "a3"))
    x.cl:dispatch()
    assert.equal("a3", x.got[3].value)
    assert.equal(1, x.synced())
  end)

  it("is in step at once with no key at all", function()
    local x = setup()
    x.w:start()
    x.cl:dispatch()
    assert.equal(1, x.synced())
    assert.equal(0, #x.got)
  end)

  it("starts over after a gap in the deliveries, with the newest revisions only", function()
    local x = setup()
    assert(kv.put(x.admin, "zmesh", "nr.n1.a", "a1"))
    x.w:start()
    x.cl:dispatch()
    -- Deliveries 2 and 3 are lost; 4 arrives.
    local c = x.srv.consumers[x.w.consumer]
    c.dseq = c.dseq + 2
    assert(kv.put(x.admin, "zmesh", "nr.n1.a", "a2"))
    assert(kv.put(x.admin, "zmesh", "nr.n1.a", "a3"))
    x.cl:dispatch()
    assert.matches("starts over %(delivery", x.logs[#x.logs])
    x.cl:dispatch()
    assert.equal("a3", x.got[#x.got].value)
    assert.equal(2, #x.got)
    assert.equal(1, x.w.restarts)
  end)

  it("starts over when a heartbeat tells of deliveries it never saw", function()
    local x = setup()
    x.w:start()
    x.cl:dispatch()
    x.conn:push({ kind = "msg", sid = x.w.sid, subject = "_INBOX_n1.w", data = "",
      headers = { Status = "100", Description = "Idle Heartbeat", ["Nats-Last-Consumer"] = "5" } })
    x.cl:dispatch()
    assert.matches("missed deliveries 1..5", x.logs[#x.logs])
  end)

  it("starts over when heartbeats stop (the server holding the consumer died)", function()
    local x = setup()
    x.w:start()
    x.cl:dispatch()
    local first = x.w.consumer
    x.advance(2.5)
    x.w:tick()
    assert.equal(first, x.w.consumer)
    x.advance(1)
    x.w:tick()
    assert.are_not.equal(first, x.w.consumer)
    assert.matches("no heartbeat for 3.5 s", x.logs[#x.logs])
  end)

  it("retries a failed start with a doubling delay, and ignores what the old consumer sends", function()
    local x = setup()
    x.srv.down = true
    x.w:start()
    x.cl:dispatch()
    assert.matches("again in 0.2 s", x.logs[#x.logs])
    x.advance(0.3)
    x.w:tick()
    x.cl:dispatch()
    assert.matches("again in 0.5 s", x.logs[#x.logs])
    for _ = 1, 6 do
      x.advance(10)
      x.w:tick()
      x.cl:dispatch()
    end
    assert.matches("again in 5.0 s", x.logs[#x.logs])
    x.srv.down = false
    assert(kv.put(x.admin, "zmesh", "nr.n1.a", "a1"))
    x.advance(10)
    x.w:tick()
    x.cl:dispatch()
    assert.equal("a1", x.got[1].value)
    assert.equal(0, x.w.failures)
    -- A message of an earlier round is not this one's.
    local old_sid = x.w.sid
    x.w:start("test")
    x.conn:push({ kind = "msg", sid = old_sid, subject = "$KV.zmesh.nr.n1.a", data = "stale",
      reply = "$JS.ACK.KV_zmesh.zwold.1.99.1.1.0" })
    x.cl:dispatch()
    for _, e in ipairs(x.got) do assert.are_not.equal("stale", e.value) end
  end)

  it("waits while disconnected and starts once connected", function()
    local x = setup()
    x.cl.state = "reconnecting"
    x.w:start()
    assert.is_nil(x.w.sid)
    x.w:tick()
    assert.is_nil(x.w.sid)
    x.cl.state = "reconnected"
    x.w:tick()
    assert.is_not_nil(x.w.sid)
  end)
end)
