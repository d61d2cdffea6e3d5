-- A watch of the keys matching a filter, for the daemon (asynchronous,
-- driven by the connection's events and a once-a-second tick).
--
-- It is an ephemeral push consumer that first delivers the newest value
-- (or delete marker) of every matching key, then every change: the
-- consumer's name and filter are in its create subject
-- ($JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>), so the server's
-- permissions can restrict a node to its own keys. Whenever the watch may
-- have missed something it starts over, which again delivers only the
-- newest revision of each key: after a gap in the consumer's delivery
-- sequence, when heartbeats stop (the server holding the consumer died),
-- on every (re)connect, and when the event queue overflowed. Duplicates
-- that a restart brings are the caller's to skip (by revision).
--
--   local w = watch.new { client = cl, bucket = "zmesh", filter = "nr.n1.>",
--     inbox = "_INBOX_n1", on_entry = function(e) … end,
--     on_synced = function() … end, log = function(fmt, …) end }
--   w:start()       -- and w:tick() every second, w:stop()
local kv = require "zmesh.control.kv"

local watch = {}

local W = {}
W.__index = W

watch.HEARTBEAT = 1000        -- ms between the consumer's idle heartbeats
watch.MISSED = 3              -- heartbeats missed before starting over
watch.RETRY_MIN, watch.RETRY_MAX = 0.25, 5

local function default_now()
  return kv.now()
end

function watch.new(o)
  local self = setmetatable({
    cl = assert(o.client), bucket = assert(o.bucket), filter = assert(o.filter),
    inbox = o.inbox or "_INBOX", on_entry = o.on_entry or function() end,
    on_synced = o.on_synced or function() end, log = o.log or function() end,
    now = o.now or default_now, heartbeat = o.heartbeat or watch.HEARTBEAT,
    retry_min = o.retry_min or watch.RETRY_MIN, retry_max = o.retry_max or watch.RETRY_MAX,
    round = 0, failures = 0, restarts = 0, running = false,
  }, W)
  return self
end

-- Forget the current consumer (its subscription ends; the server removes
-- the consumer once nobody listens).
function W:drop()
  if self.sid then self.cl:unsubscribe(self.sid) end
  self.sid, self.consumer, self.live = nil, nil, false
end

function W:stop()
  self.running = false
  self:drop()
end

-- Start (or start over): a new deliver subject and consumer.
function W:start(why)
  self.running = true
  self:drop()
  self.round = self.round + 1
  local round = self.round
  if why then
    self.restarts = self.restarts + 1
    self.log("control: watch of %s starts over (%s)", self.filter, why)
  end
  self.retry_at = nil
  if not self.cl:connected() then return end
  local token = kv.random_token()
  local deliver = self.inbox .. ".w" .. token
  self.dseq, self.synced, self.last_seen = 0, false, self.now()
  local sid, err = self.cl:subscribe(deliver, function(msg) self:message(round, msg) end)
  if not sid then return self:failed(round, "subscribe: " .. tostring(err)) end
  self.sid = sid
  self.consumer = "zw" .. token
  self.cl:call_async("add_consumer", { stream = kv.stream(self.bucket), name = self.consumer,
    filter = kv.subject(self.bucket, self.filter), deliver = deliver, policy = "last_per_subject",
    heartbeat = self.heartbeat, inactive = 4 * self.heartbeat, timeout = 5000 }, function(e)
    if round ~= self.round then return end
    if not e.ok then return self:failed(round, e.error) end
    self.live, self.failures = true, 0
    self.last_seen = self.now()
    if e.result.num_pending == 0 and not self.synced then
      self.synced = true
      self.on_synced()
    end
  end)
end

-- The consumer could not be made: try again later, doubling.
function W:failed(round, err)
  if round ~= self.round then return end
  self:drop()
  self.failures = self.failures + 1
  local delay = math.min(self.retry_min * 2 ^ (self.failures - 1), self.retry_max)
  self.retry_at = self.now() + delay
  self.last_error = tostring(err)
  self.log("control: cannot watch %s: %s (again in %.1f s)", self.filter, tostring(err), delay)
end

function W:message(round, msg)
  if round ~= self.round then return end
  self.last_seen = self.now()
  if kv.heartbeat(msg) then
    -- The heartbeat says what the consumer delivered last.
    local last = tonumber(msg.headers and msg.headers["Nats-Last-Consumer"])
    if last and last > self.dseq then return self:start("missed deliveries " .. self.dseq + 1 .. ".." .. last) end
    return
  end
  local e = kv.entry(self.bucket, msg)
  if not e.dseq or not e.key then return end
  if e.dseq ~= self.dseq + 1 then
    return self:start(string.format("delivery %d after %d", e.dseq, self.dseq))
  end
  self.dseq = e.dseq
  self.on_entry(e)
  if e.pending == 0 and not self.synced then
    self.synced = true
    self.on_synced()
  end
end

-- Once a second: start over when heartbeats stopped, retry a failed start.
function W:tick()
  if not self.running then return end
  local t = self.now()
  if not self.cl:connected() then return end
  if self.retry_at then
    if t >= self.retry_at then self:start() end
    return
  end
  if not self.sid then return self:start() end
  if t - self.last_seen > watch.MISSED * self.heartbeat / 1000 then
    self:start(string.format("no heartbeat for %.1f s", t - self.last_seen))
  end
end

return watch
