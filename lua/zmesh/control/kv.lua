-- The fleet's key-value bucket on NATS JetStream, as the NATS clients lay
-- a bucket out (so `nats kv get zmesh nr.n1.abc` reads it too):
--
--   bucket B     the stream KV_B, subjects $KV.B.>, the last HISTORY
--                values of each key kept (max_msgs_per_subject)
--   key K        the subject $KV.B.K; its value's revision is the
--                message's stream sequence
--   delete       a message with header KV-Operation: DEL (a marker that
--                watches see, also a node that was away)
--   compare-and-set
--                header Nats-Expected-Last-Subject-Sequence: REV (0: the
--                key must not exist); a stale REV fails with JetStream
--                error 10071, and nothing is written
--
-- Keys of the fleet:
--   net.<net_id>             the network: generation, nodes, state (the
--                            publisher's compare-and-set lock)
--   nr.<node_id>.<net_id>    the NR config of node_id (sealed key only)
--   status.<node_id>.<net_id>  what node_id applied and sees
--   facts.<node_id>          node_id's facts (what `zmesh node facts` says)
--
-- The bucket is made stricter than a stock one: no rollups and no purges
-- (a client that may write one key could otherwise wipe the whole stream
-- with a "Nats-Rollup: all" header), direct gets on (per-key reads that
-- subject permissions can restrict).
--
-- The functions here are synchronous (for the command-line tools); the
-- daemon builds the same requests (kv.put_args, …) and sends them on the
-- connection's worker thread (zmesh.control.client).
local json = require "zmesh.json"

local kv = {}

kv.WRONG_LAST_SEQUENCE = 10071
kv.REPLICAS_NOT_SUPPORTED = 10074
kv.HISTORY = 5
kv.MAX_VALUE = 8 * 1024 * 1024
kv.DEFAULT_BUCKET = "zmesh"

function kv.valid_bucket(b)
  return type(b) == "string" and #b >= 1 and #b <= 48 and b:match("^[A-Za-z0-9_-]+$") ~= nil
end

-- A key: dot-separated tokens of A-Z a-z 0-9 _ - =.
function kv.valid_key(k)
  if type(k) ~= "string" or k == "" or #k > 256 then return false end
  for token in (k .. "."):gmatch("([^.]*)%.") do
    if token == "" or not token:match("^[%w_=-]+$") then return false end
  end
  return true
end

function kv.stream(bucket) return "KV_" .. bucket end
function kv.subject(bucket, key) return "$KV." .. bucket .. "." .. key end

function kv.key_of(bucket, subject)
  local prefix = "$KV." .. bucket .. "."
  if type(subject) == "string" and subject:sub(1, #prefix) == prefix then return subject:sub(#prefix + 1) end
  return nil
end

function kv.nr_key(node_id, net_id) return "nr." .. node_id .. "." .. net_id end
function kv.status_key(node_id, net_id) return "status." .. node_id .. "." .. net_id end
function kv.facts_key(node_id) return "facts." .. node_id end
function kv.net_key(net_id) return "net." .. net_id end

local function split(s)
  local out = {}
  for t in (s .. "."):gmatch("([^.]*)%.") do out[#out + 1] = t end
  return out
end

-- What a consumer's delivery says in its reply subject:
-- $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
-- (or with <domain>.<account hash> after ACK, and a token at the end).
function kv.ack_info(reply)
  if type(reply) ~= "string" or reply:sub(1, 8) ~= "$JS.ACK." then return nil end
  local t = split(reply)
  local o
  if #t == 9 then o = 0 elseif #t >= 11 then o = 2 else return nil end
  local n = function(i) return math.tointeger(tonumber(t[i + o])) end
  return { stream = t[3 + o], consumer = t[4 + o], delivered = n(5), revision = n(6), dseq = n(7),
    pending = n(9) }
end

local ops = { DEL = "delete", PURGE = "purge" }

-- The entry a message holds (a delivery of a watch, or a direct get):
-- {key, value, revision, op = "put" | "delete" | "purge", headers, time,
--  dseq, pending}.
function kv.entry(bucket, msg)
  local h = msg.headers or {}
  local e = { headers = h, value = msg.data, op = ops[h["KV-Operation"]] or "put" }
  local ack = kv.ack_info(msg.reply)
  if ack then
    e.key = kv.key_of(bucket, msg.subject)
    e.revision, e.dseq, e.pending = ack.revision, ack.dseq, ack.pending
  else
    e.key = kv.key_of(bucket, h["Nats-Subject"] or msg.subject)
    e.revision = math.tointeger(tonumber(h["Nats-Sequence"])) or msg.seq
    e.time = msg.time
  end
  return e
end

-- Is MSG a consumer's idle heartbeat (status 100, no data)?
function kv.heartbeat(msg)
  local h = msg.headers or {}
  return h.Status == "100" and (msg.data == nil or msg.data == "")
end

-- The arguments of the JetStream calls.
function kv.put_args(bucket, key, data, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.expect then headers["Nats-Expected-Last-Subject-Sequence"] = tostring(opts.expect) end
  return { subject = kv.subject(bucket, key), data = data, headers = headers, timeout = opts.timeout }
end

function kv.delete_args(bucket, key, opts)
  opts = opts or {}
  local o = { headers = { ["KV-Operation"] = "DEL" }, expect = opts.expect, timeout = opts.timeout }
  for k, v in pairs(opts.headers or {}) do o.headers[k] = v end
  return kv.put_args(bucket, key, "", o)
end

function kv.get_args(bucket, key, opts)
  return { stream = kv.stream(bucket), subject = kv.subject(bucket, key), timeout = opts and opts.timeout }
end

-- What kind of failure a call's (ename, code) is: "conflict" (a stale
-- compare-and-set), "denied", "unavailable" (no server or JetStream
-- answered), "missing", or "error".
function kv.kind(ename, code)
  if code == kv.WRONG_LAST_SEQUENCE then return "conflict" end
  if ename == "EACCES" then return "denied" end
  if ename == "ENOENT" then return "missing" end
  if ename == "ETIMEDOUT" or ename == "ENOTCONN" or ename == "EHOSTUNREACH" or ename == "ECONNREFUSED"
      or ename == "EAGAIN" then
    return "unavailable"
  end
  return "error"
end

-- ---- synchronous calls (CL: a zmesh.control.client) ----

function kv.put(cl, bucket, key, data, opts)
  local res, err, ename, code = cl:call("publish", kv.put_args(bucket, key, data, opts))
  if not res then return nil, err, kv.kind(ename, code) end
  return res.seq
end

function kv.delete(cl, bucket, key, opts)
  local res, err, ename, code = cl:call("publish", kv.delete_args(bucket, key, opts))
  if not res then return nil, err, kv.kind(ename, code) end
  return res.seq
end

-- The entry of KEY (a delete marker too), false when the key never had a
-- value; nil, err, kind on failure.
function kv.get(cl, bucket, key, opts)
  local res, err, ename, code = cl:call("get_last", kv.get_args(bucket, key, opts))
  if not res then
    if ename == "ENOENT" then return false end
    return nil, err, kv.kind(ename, code)
  end
  return kv.entry(bucket, res)
end

-- The entry's value as JSON (nil for a delete or a value that is not).
function kv.decode(e)
  if not e or e.op ~= "put" then return nil end
  local v = json.decode(e.value or "")
  if type(v) ~= "table" then return nil end
  return v
end

-- Monotonic seconds.
local has_uv, uv = pcall(require, "luv")
function kv.now()
  if has_uv then return uv.hrtime() / 1e9 end
  return os.time()
end

function kv.sleep(seconds)
  if has_uv then uv.sleep(math.floor(seconds * 1000)) else os.execute("sleep " .. seconds) end
end

-- Call FN(...) until it answers or the cluster stays unavailable past
-- DEADLINE (kv.now() seconds): after a server is lost, JetStream elects
-- new leaders within seconds.
function kv.retrying(deadline, fn, ...)
  while true do
    local v, err, kind = fn(...)
    if v ~= nil or kind ~= "unavailable" or kv.now() >= deadline then return v, err, kind end
    kv.sleep(0.3)
  end
end

local function random_token()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(6) or tostring(os.time())
  if f then f:close() end
  return (b:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
kv.random_token = random_token

-- The newest entry of every key matching FILTER (a key pattern, "*" and
-- ">" wildcards), delete markers included: {key → entry}. A consumer
-- that delivers the last message per subject, read until it says nothing
-- is pending. OPTS: inbox (the connection's inbox prefix), timeout (ms),
-- headers_only.
function kv.snapshot(cl, bucket, filter, opts)
  opts = opts or {}
  local timeout = opts.timeout or 5000
  local deliver = (opts.inbox or "_INBOX") .. ".snap" .. random_token()
  local out, done = {}, false
  local last_dseq = 0
  local sid, serr = cl:subscribe(deliver, function(msg)
    if kv.heartbeat(msg) then return end
    local e = kv.entry(bucket, msg)
    if e.key and e.dseq and e.dseq > last_dseq then
      last_dseq = e.dseq
      out[e.key] = e
      if e.pending == 0 then done = true end
    end
  end)
  if not sid then return nil, serr, "error" end
  local name = "zs" .. random_token()
  local info, err, ename, code = cl:call("add_consumer", { stream = kv.stream(bucket), name = name,
    filter = kv.subject(bucket, filter), deliver = deliver, policy = "last_per_subject",
    headers_only = opts.headers_only or nil, inactive = 5000, timeout = timeout })
  if not info then
    cl:unsubscribe(sid)
    return nil, err, kv.kind(ename, code)
  end
  if info.num_pending == 0 then done = true end
  local deadline = kv.now() + timeout / 1000
  while not done and kv.now() < deadline do cl:wait(100) end
  cl:unsubscribe(sid)
  if opts.delete_consumer ~= false then
    cl:call("delete_consumer", { stream = kv.stream(bucket), name = name, timeout = 2000 })
  end
  if not done then
    return nil, string.format("%s: the bucket did not deliver every key within %d ms", filter, timeout),
      "unavailable"
  end
  return out
end

-- Make sure bucket BUCKET exists (made with OPTS.replicas, default 3, or
-- 1 where JetStream is not clustered; OPTS.history). Returns the stream
-- info and whether it was made now.
function kv.ensure_bucket(cl, bucket, opts)
  opts = opts or {}
  local info, err, ename, code = cl:call("stream_info", { stream = kv.stream(bucket), timeout = opts.timeout })
  if info then return info, false end
  if ename ~= "ENOENT" then return nil, err, kv.kind(ename, code) end
  local args = { name = kv.stream(bucket), subjects = { "$KV." .. bucket .. ".>" },
    max_msgs_per_subject = opts.history or kv.HISTORY, max_msg_size = opts.max_value or kv.MAX_VALUE,
    replicas = opts.replicas or 3, allow_direct = true, deny_delete = true, deny_purge = true,
    allow_rollup = false, duplicates = 120000, timeout = opts.timeout }
  info, err, ename, code = cl:call("add_stream", args)
  if not info and code == kv.REPLICAS_NOT_SUPPORTED and not opts.replicas then
    args.replicas = 1
    info, err, ename, code = cl:call("add_stream", args)
  end
  if not info then
    if ename == "EEXIST" then return kv.ensure_bucket(cl, bucket, opts) end
    return nil, err, kv.kind(ename, code)
  end
  return info, true
end

return kv
