-- A NATS connection (core.nats) with its events dispatched: handlers per
-- subscription, callbacks per asynchronous JetStream call, and the
-- connection's state changes. The daemon drains it from its luv loop
-- (the connection's eventfd); the tools block in cl:wait(ms).
local client = {}

local C = {}
C.__index = C

local ERRORS_KEPT = 20

-- CONN: a core.nats connection (or a fake with the same methods).
function client.wrap(conn)
  return setmetatable({ conn = conn, subs = {}, pending = {}, errors = {}, state = "connecting" }, C)
end

-- Connect with core.nats (OPTS as core.nats.connect takes them).
function client.connect(opts, core)
  core = core or require "zmesh.core"
  local conn, err, ename = core.nats.connect(opts)
  if not conn then return nil, err, ename end
  local cl = client.wrap(conn)
  if not opts.background then cl.state = "connected" end
  return cl
end

-- Handle every event waiting; handler errors are logged, never raised.
function C:dispatch()
  local events = self.conn:events()
  for _, e in ipairs(events) do
    local ok, err = pcall(function()
      if e.kind == "msg" then
        local h = self.subs[e.sid]
        if h then h(e) end
      elseif e.kind == "done" then
        local cb = self.pending[e.id]
        self.pending[e.id] = nil
        if cb then cb(e) end
      elseif e.kind == "error" then
        table.insert(self.errors, e.error)
        if #self.errors > ERRORS_KEPT then table.remove(self.errors, 1) end
        if self.on_error then self.on_error(e.error) end
      elseif e.kind == "overflow" then
        if self.on_overflow then self.on_overflow(e.dropped) end
      else
        self.state = e.kind
        if self.on_state then self.on_state(e.kind, e.url) end
      end
    end)
    if not ok and self.log then self.log("control: handling a %s event: %s", tostring(e.kind), tostring(err)) end
  end
  return #events
end

function C:connected()
  return self.state == "connected" or self.state == "reconnected"
end

function C:subscribe(subject, handler)
  local sid, err = self.conn:subscribe(subject)
  if not sid then return nil, err end
  self.subs[sid] = handler
  return sid
end

function C:unsubscribe(sid)
  if not sid then return end
  self.subs[sid] = nil
  if not self.closed then self.conn:unsubscribe(sid) end
end

-- The permission the server refused last (its -ERR text), if any.
function C:last_violation(subject)
  for i = #self.errors, 1, -1 do
    local e = self.errors[i]
    if e:find("Permissions Violation", 1, true) and (not subject or e:find(subject, 1, true)) then return e end
  end
  return nil
end

-- A JetStream call on the worker thread; CB(event) gets {ok, result |
-- error, ename, code}. A call the server refused (a permissions
-- violation) fails as EACCES with the server's text.
function C:call_async(op, args, cb)
  local id, err, ename = self.conn:js_async(op, args)
  if not id then
    cb({ ok = false, error = err, ename = ename })
    return nil
  end
  self.pending[id] = function(e)
    if not e.ok and e.ename == "ETIMEDOUT" then
      local v = self:last_violation(args.subject or args.filter)
      if v then e.error, e.ename = "EACCES: " .. v, "EACCES" end
    end
    cb(e)
  end
  return id
end

-- The same, synchronous (tools only: it blocks the caller).
function C:call(op, args)
  local res, err, ename, code = self.conn:js(op, args)
  if not res and ename == "ETIMEDOUT" then
    self:dispatch()
    local v = self:last_violation(args.subject or args.filter)
    if v then return nil, "EACCES: " .. v, "EACCES" end
  end
  return res, err, ename, code
end

-- Wait up to MS for events and handle them; true when some came.
function C:wait(ms)
  if self.conn:wait(ms) then
    self:dispatch()
    return true
  end
  return false
end

function C:fd() return self.conn:fd() end

function C:close()
  if self.closed then return end
  self.closed = true
  -- Callers check connected() before each call: none reaches the closed
  -- connection (a daemon's reload stops an agent whose jobs still run).
  self.state = "closed"
  self.conn:close()
end

return client
