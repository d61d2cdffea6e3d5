-- An in-memory NATS JetStream with the calls core.nats makes (the
-- connection methods, the JetStream ops with their fields as the binding
-- checks them), for unit tests without servers: streams keep every
-- message with its sequence, compare-and-set headers are honoured
-- (error 10071), consumers deliver the last message per subject and then
-- every new one to their deliver subject, with the reply subject the
-- server gives ($JS.ACK…). Deliveries and asynchronous results wait in
-- the connection's event queue until events() drains it.
--
--   local srv = fake_nats.server()
--   local conn = fake_nats.conn(srv)      -- what core.nats.connect returns
--   srv.deny = function(conn, op, args) return "EACCES: …" end   -- refusals
local fake = {}

-- The fields core.nats.js checks per op (bindings/nats.c).
fake.FIELDS = {
  publish = { "subject", "data", "headers", "timeout" },
  get_last = { "stream", "subject", "timeout" },
  add_consumer = { "stream", "name", "filter", "deliver", "policy", "heartbeat", "inactive", "headers_only",
    "timeout" },
  delete_consumer = { "stream", "name", "timeout" },
  add_stream = { "name", "subjects", "max_msgs_per_subject", "max_bytes", "max_msg_size", "max_age", "replicas",
    "memory", "allow_direct", "deny_delete", "deny_purge", "allow_rollup", "duplicates", "timeout" },
  stream_info = { "stream", "timeout" },
}

-- Does SUBJECT match PATTERN (NATS wildcards * and >)?
function fake.match(pattern, subject)
  local p, s = {}, {}
  for t in (pattern .. "."):gmatch("([^.]*)%.") do p[#p + 1] = t end
  for t in (subject .. "."):gmatch("([^.]*)%.") do s[#s + 1] = t end
  for i, t in ipairs(p) do
    if t == ">" then return #s >= i end
    if s[i] == nil or (t ~= "*" and t ~= s[i]) then return false end
  end
  return #p == #s
end

local Server = {}
Server.__index = Server

function fake.server()
  return setmetatable({ streams = {}, conns = {}, consumers = {}, calls = {}, down = false }, Server)
end

local function err(ename, text, code) return nil, ename .. ": " .. text, ename, code end

function Server:stream_for(subject)
  for name, st in pairs(self.streams) do
    for _, pat in ipairs(st.subjects) do
      if fake.match(pat, subject) then return name, st end
    end
  end
end

function Server:last_of(st, subject)
  local last
  for _, m in ipairs(st.msgs) do if m.subject == subject then last = m end end
  return last
end

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

function Server:deliver(c, m, pending)
  c.dseq = c.dseq + 1
  local headers = c.headers_only and copy(m.headers) or m.headers
  c.conn:push_msg(c.deliver, { subject = m.subject, data = c.headers_only and "" or m.data, headers = headers,
    reply = string.format("$JS.ACK.%s.%s.1.%d.%d.%d.%d", c.stream, c.name, m.seq, c.dseq, 1700000000000000000 + m.seq,
      pending) })
end

local ops = {}

function ops.add_stream(srv, _, a)
  if srv.streams[a.name] then return err("EEXIST", "stream name already in use", 10058) end
  srv.streams[a.name] = { name = a.name, subjects = a.subjects, msgs = {}, seq = 0, cfg = copy(a) }
  return ops.stream_info(srv, nil, { stream = a.name })
end

function ops.stream_info(srv, _, a)
  local st = srv.streams[a.stream]
  if not st then return err("ENOENT", "stream not found", 10059) end
  return { name = st.name, subjects = st.subjects, replicas = st.cfg.replicas or 1, messages = #st.msgs,
    last_seq = st.seq, allow_rollup = st.cfg.allow_rollup or false, deny_purge = st.cfg.deny_purge or false }
end

function ops.publish(srv, _, a)
  local name, st = srv:stream_for(a.subject)
  if not st then return err("EHOSTUNREACH", "No responders available for request") end
  local h = a.headers or {}
  local expect = h["Nats-Expected-Last-Subject-Sequence"]
  local last = srv:last_of(st, a.subject)
  if expect and tonumber(expect) ~= (last and last.seq or 0) then
    return err("ESTALE", "wrong last sequence: " .. (last and last.seq or 0), 10071)
  end
  st.seq = st.seq + 1
  local m = { subject = a.subject, data = a.data or "", headers = copy(h), seq = st.seq }
  m.headers["Nats-Expected-Last-Subject-Sequence"] = nil
  st.msgs[#st.msgs + 1] = m
  for _, c in pairs(srv.consumers) do
    if c.stream == name and fake.match(c.filter, a.subject) and not c.gone then srv:deliver(c, m, 0) end
  end
  return { stream = name, seq = m.seq, duplicate = false }
end

function ops.get_last(srv, _, a)
  local st = srv.streams[a.stream]
  if not st then return err("ENOENT", "stream not found", 10059) end
  local m = srv:last_of(st, a.subject)
  if not m then return err("ENOENT", "Not Found") end
  local h = copy(m.headers)
  h["Nats-Sequence"], h["Nats-Subject"], h["Nats-Stream"] = tostring(m.seq), m.subject, a.stream
  return { subject = m.subject, data = m.data, headers = h, seq = m.seq, time = 0 }
end

function ops.add_consumer(srv, conn, a)
  local st = srv.streams[a.stream]
  if not st then return err("ENOENT", "stream not found", 10059) end
  local c = { stream = a.stream, name = a.name, filter = a.filter, deliver = a.deliver, conn = conn, dseq = 0,
    headers_only = a.headers_only }
  local last = {}
  for _, m in ipairs(st.msgs) do
    if fake.match(a.filter, m.subject) then last[m.subject] = m end
  end
  local list = {}
  for _, m in pairs(last) do list[#list + 1] = m end
  table.sort(list, function(x, y) return x.seq < y.seq end)
  srv.consumers[a.name] = c
  for i, m in ipairs(list) do srv:deliver(c, m, #list - i) end
  return { name = a.name, num_pending = #list, delivered_consumer_seq = 0, delivered_stream_seq = 0 }
end

function ops.delete_consumer(srv, _, a)
  if not srv.consumers[a.name] then return err("ENOENT", "consumer not found", 10014) end
  srv.consumers[a.name] = nil
  return { deleted = true }
end

function Server:run(conn, op, a)
  self.calls[#self.calls + 1] = { op = op, args = a }
  local known = {}
  for _, f in ipairs(fake.FIELDS[op] or error("unknown op " .. tostring(op))) do known[f] = true end
  for k in pairs(a) do if not known[k] then error("bad argument #3 to 'js' (unknown field '" .. k .. "')") end end
  if self.down or conn.down then return err("ETIMEDOUT", "Timeout") end
  if self.deny then
    local text = self.deny(conn, op, a)
    if text then
      conn:push({ kind = "error", error = text })
      return err("ETIMEDOUT", "Timeout")
    end
  end
  return ops[op](self, conn, a)
end

-- ---- the connection ----

local Conn = {}
Conn.__index = Conn

function fake.conn(srv, opts)
  local c = setmetatable({ srv = srv, queue = {}, subs = {}, next_sid = 0, next_id = 0, opts = opts or {} }, Conn)
  srv.conns[#srv.conns + 1] = c
  return c
end

function Conn:push(e) self.queue[#self.queue + 1] = e end

function Conn:push_msg(subject, msg)
  for sid, pat in pairs(self.subs) do
    if fake.match(pat, subject) then
      self:push({ kind = "msg", sid = sid, subject = msg.subject, data = msg.data, headers = msg.headers,
        reply = msg.reply })
    end
  end
end

function Conn:fd() return 0 end
function Conn:status() return self.closed and "closed" or "connected" end
function Conn:url() return "nats://fake:4222" end

function Conn:events()
  local q = self.queue
  self.queue = {}
  return q
end

function Conn:wait() return #self.queue > 0 end

function Conn:subscribe(subject)
  self.next_sid = self.next_sid + 1
  self.subs[self.next_sid] = subject
  return self.next_sid
end

function Conn:unsubscribe(sid)
  local had = self.subs[sid] ~= nil
  self.subs[sid] = nil
  return had
end

function Conn:publish() return true end

function Conn:js(op, args) return self.srv:run(self, op, args) end

-- Asynchronous: the result waits in the queue (held back while
-- self.hold is set, released by Conn:release()).
function Conn:js_async(op, args)
  self.next_id = self.next_id + 1
  local id = self.next_id
  local res, e, ename, code = self.srv:run(self, op, args)
  local ev = { kind = "done", id = id, op = op, ok = res ~= nil, result = res, error = e, ename = ename, code = code }
  if self.hold then
    self.held = self.held or {}
    self.held[#self.held + 1] = ev
  else
    self:push(ev)
  end
  return id
end

function Conn:release()
  for _, ev in ipairs(self.held or {}) do self:push(ev) end
  self.held = nil
end

function Conn:close() self.closed = true end

return fake
