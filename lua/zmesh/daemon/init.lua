-- The node agent, `zmesh daemon`: the only writer on its node.
--
-- One luv (libuv) loop carries everything: the HTTP API on a unix socket
-- (libmicrohttpd, its epoll descriptor watched by the loop), the reconcile
-- timer, signals, and the worker's pipe. Every change — an API call, a
-- repair — is a job in one FIFO queue, run one at a time by the worker (a
-- child process, zmesh.daemon.worker) through the same entry points the
-- one-shot commands use, under the same node lock. Reads (status, metrics,
-- facts, NR lists) are answered by this process at once, from the node as
-- it is, so they never wait behind a long apply.
--
-- Desired state is what the applies stored in state_dir; at start the
-- first job converges the node to it (boot restore), and then every
-- reconcile_interval seconds (repairs: a dead wireguard-go, a deleted
-- route, a flipped nft rule). An NR whose converge keeps failing backs off
-- (doubling, up to five minutes) instead of spinning. The loop rests at
-- least three times as long as its last converge took, so that a node
-- with many NRs (a converge of 200 takes seconds) keeps its one writer
-- free for API calls three quarters of the time.
--
-- The data plane never depends on this process: stopping, restarting or
-- killing it leaves every NR as it was.
local uv = require "luv"
local api = require "zmesh.daemon.api"
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local entry = require "zmesh.entry"
local json = require "zmesh.json"
local metrics = require "zmesh.daemon.metrics"
local names = require "zmesh.node.names"

local daemon = {}

local BACKOFF_MAX = 300

local D = {}
D.__index = D

-- Logs go to standard error, one line each, without timestamps (journald
-- adds them).
function D:log(fmt, ...)
  io.stderr:write("zmesh daemon: ", string.format(fmt, ...), "\n")
  io.stderr:flush()
end

local function now() return uv.now() / 1000 end

local function declare(m)
  m:declare("zmesh_up", "gauge", "1 while the daemon runs")
  m:declare("zmesh_jobs_total", "counter", "jobs run by the writer, by entry point and result")
  m:declare("zmesh_job_seconds_total", "counter", "time the writer spent on jobs, by entry point")
  m:declare("zmesh_queue_length", "gauge", "jobs waiting for the writer")
  m:declare("zmesh_converges_total", "counter", "converge runs (boot restore and reconcile), by result")
  m:declare("zmesh_converge_seconds", "gauge", "duration of the last converge")
  m:declare("zmesh_repairs_total", "counter", "changes a converge made to put the node back, by object")
  m:declare("zmesh_converge_failures_total", "counter", "failed converges of one NR")
  m:declare("zmesh_worker_restarts_total", "counter", "times the writer process was started again")
  m:declare("zmesh_nrs", "gauge", "NRs stored on this node, by state")
  m:declare("zmesh_containers_pending", "gauge", "stored attachments whose namespace does not exist")
  m:declare("zmesh_store_problems", "gauge", "stored files found bad and set aside")
  m:declare("zmesh_wireguard_peer_rx_bytes", "gauge", "bytes received from a peer")
  m:declare("zmesh_wireguard_peer_tx_bytes", "gauge", "bytes sent to a peer")
  m:declare("zmesh_wireguard_peer_handshake_age_seconds", "gauge",
    "seconds since the last handshake with a peer (absent: never)")
  m:set("zmesh_up", nil, 1)
end

-- ---- the worker ----

-- The job that hands the writer the node config in force: it never
-- reads the file itself, so a bad edit changes nothing until SIGHUP.
function D:pin_job()
  return { entry = require("zmesh.daemon.worker").REPIN, params = { config = self.cfg }, internal = true,
    done = function(reply)
      if not reply.ok then self:log("the writer did not take the node config: %s", tostring(reply.error)) end
    end }
end

function D:start_worker()
  local stdin, stdout = uv.new_pipe(false), uv.new_pipe(false)
  local w = { stdin = stdin, stdout = stdout, buffer = "", alive = true }
  local handle, pid = uv.spawn(self.exe, {
    args = { "daemon", "--worker", "--config", self.config_path },
    stdio = { stdin, stdout, 2 },
  }, function(code, signal)
    w.alive = false
    if not self.stopping then
      self:log("the writer (pid %s) ended (exit %s, signal %s); starting it again", tostring(w.pid),
        tostring(code), tostring(signal))
    end
    self:worker_died(w, code, signal)
  end)
  if not handle then
    stdin:close()
    stdout:close()
    error("cannot start the writer: " .. tostring(pid), 0)
  end
  w.handle, w.pid = handle, pid
  -- Its first job, before any queued one.
  local pin = self:pin_job()
  self.next_id = self.next_id + 1
  pin.id, pin.queued = self.next_id, now()
  table.insert(self.queue, 1, pin)
  stdout:read_start(function(err, data)
    if err or not data then return end
    w.buffer = w.buffer .. data
    while true do
      local line, rest = w.buffer:match("^([^\n]*)\n(.*)$")
      if not line then break end
      w.buffer = rest
      self:worker_reply(w, line)
    end
  end)
  self.worker = w
end

function D:worker_died(w, code, signal)
  for _, h in ipairs({ w.stdin, w.stdout, w.handle }) do
    if not h:is_closing() then h:close() end
  end
  if self.worker ~= w then return end
  self.worker = nil
  local job = self.running
  if job then
    self.running = nil
    self:finish(job, { ok = false, error = string.format(
      "the writer ended during %s (exit %s, signal %s); the next converge picks up from where it stopped",
      job.entry, tostring(code), tostring(signal)) })
  end
  if self.stopping then return uv.stop() end
  self.metrics:add("zmesh_worker_restarts_total")
  self.restart_timer:start(1000, 0, function()
    self:start_worker()
    self:pump()
  end)
end

function D:worker_reply(w, line)
  local reply = json.decode(line)
  local job = self.running
  if not job or type(reply) ~= "table" or reply.id ~= job.id then
    self:log("the writer said something out of turn: %s", line:sub(1, 200))
    return
  end
  self.running = nil
  self:finish(job, reply)
  self:pump()
end

-- ---- the queue ----

-- JOB: {entry, params, done = function(reply)}; reply {ok, result | error, kind, field}.
function D:enqueue(job)
  self.next_id = self.next_id + 1
  job.id = self.next_id
  job.queued = now()
  self.queue[#self.queue + 1] = job
  self:pump()
  return job
end

function D:pump()
  if self.running or not self.worker or #self.queue == 0 then return end
  local job = table.remove(self.queue, 1)
  self.running = job
  job.started = now()
  self.worker.stdin:write(json.encode({ id = job.id, entry = job.entry, params = job.params }) .. "\n")
end

-- What a job tells of one NR's state (the status shows it).
function D:note_nr(job, reply)
  local id = type(job.params) == "table" and job.params.net_id
  if type(id) ~= "string" or job.params.dry_run then return end
  -- A container detached (or its NR removed) is pending no more.
  if reply.ok and job.entry == "container.detach" and type(job.params.netns) == "string" then
    self.pending[id .. "/" .. job.params.netns] = nil
  elseif reply.ok and job.entry == "nr.remove" then
    for key in pairs(self.pending) do
      if key:sub(1, #id + 1) == id .. "/" then self.pending[key] = nil end
    end
  end
  if job.entry == "nr.apply" then
    self.nr_state[id] = reply.ok and { state = "ok" } or self.nr_state[id]
  elseif job.entry == "nr.remove" and reply.ok then
    self.nr_state[id], self.backoff[id] = nil, nil
  end
end

-- Entry points after which the failover engine looks at the NRs again.
local CHANGES_NRS = { ["nr.apply"] = true, ["nr.remove"] = true, ["node.converge"] = true,
  ["node.stop"] = true }

function D:finish(job, reply)
  self:note_nr(job, reply)
  if self.failover and reply.ok and CHANGES_NRS[job.entry] then
    if job.entry == "node.converge" then
      -- A restored or repaired NR may have a new namespace: probe anew.
      for id, res in pairs(reply.result and reply.result.nrs or {}) do
        if res.changes and #res.changes > 0 then self.failover:reopen(id) end
      end
    end
    local only
    if (job.entry == "nr.apply" or job.entry == "nr.remove") and type(job.params) == "table"
        and type(job.params.net_id) == "string" then
      only = job.params.net_id
      if job.entry == "nr.apply" then self.failover:reopen(only) end
    end
    local ok, err = pcall(self.failover.refresh, self.failover, only)
    if not ok then self:log("failover: %s", tostring(err)) end
  end
  local took = now() - (job.started or now())
  self.metrics:add("zmesh_jobs_total", { entry = job.entry, result = reply.ok and "ok" or "error" })
  self.metrics:add("zmesh_job_seconds_total", { entry = job.entry }, took)
  local ok, err = pcall(job.done, reply)
  if not ok then self:log("answering %s failed: %s", job.entry, tostring(err)) end
  if self.stopping and not self.running then self:shutdown() end
end

-- ---- converge: boot restore and the reconcile loop ----

local function count_changes(list) return list and #list or 0 end

-- OPTS.periodic: the reconcile loop's tick, which waits out its rest.
function D:converge(opts)
  if self.converging or self.stopping then return end
  if opts and opts.periodic and self.rest_until and now() < self.rest_until then return end
  self.converging = true
  local skip, t = {}, now()
  for id, b in pairs(self.backoff) do
    if b.until_ > t then skip[#skip + 1] = id end
  end
  table.sort(skip)
  self:enqueue({ entry = "node.converge", params = { skip = json.array(skip) }, internal = true,
    done = function(reply)
      self.converging = false
      self:converged(reply, now() - t)
    end })
end

function D:converged(reply, took)
  local first = self.last_converge == nil
  if first and not self.failover_started then
    -- After the boot restore: the NRs to probe exist now.
    self.failover_started = true
    self.failover = require("zmesh.daemon.failover").start(self)
    if self.failover then
      local ok, err = pcall(self.failover.refresh, self.failover)
      if not ok then self:log("failover: %s", tostring(err)) end
    end
  end
  self.last_converge = { at = now(), seconds = took, ok = reply.ok, error = reply.error }
  self.rest_until = now() + 3 * took
  self.metrics:add("zmesh_converges_total", { result = reply.ok and "ok" or "error" })
  self.metrics:set("zmesh_converge_seconds", nil, took)
  if not reply.ok then
    self:log("converge failed: %s", tostring(reply.error))
    return
  end
  local r = reply.result
  self.report = r
  local states = {}
  for id, res in pairs(r.nrs or {}) do
    states[id] = res.error and { state = "error", error = res.error }
      or (res.skipped and self.nr_state[id]) or { state = "ok" }
  end
  self.nr_state = states
  if r.ndmz and r.ndmz.error then self:log("ndmz: %s", r.ndmz.error) end
  if r.ndmz and count_changes(r.ndmz.changes) > 0 and not first then
    self:log("repaired ndmz: %s", table.concat(r.ndmz.changes, "; "))
    self.metrics:add("zmesh_repairs_total", { object = "ndmz" }, #r.ndmz.changes)
  end
  local stored = 0
  for id, res in pairs(r.nrs or {}) do
    stored = stored + 1
    if res.error then
      local b = self.backoff[id] or { failures = 0 }
      b.failures = b.failures + 1
      local delay = math.min(self.cfg.reconcile_interval * 2 ^ b.failures, BACKOFF_MAX)
      b.until_, b.error = now() + delay, res.error
      self.backoff[id] = b
      self.metrics:add("zmesh_converge_failures_total", { net_id = id })
      self:log("NR %s: %s (next try in %.0f s)", id, res.error, delay)
    elseif not res.skipped then
      if self.backoff[id] then self:log("NR %s: converged again", id) end
      self.backoff[id] = nil
      if count_changes(res.changes) > 0 then
        self:log("%s NR %s: %s", first and "restored" or "repaired", id, table.concat(res.changes, "; "))
        if not first then
          self.metrics:add("zmesh_repairs_total", { object = "nr", net_id = id }, #res.changes)
        end
      end
    end
  end
  for _, res in ipairs(r.removed or {}) do
    if res.error then
      self:log("NR %s (never stored): cannot remove what is left of it: %s", res.net_id, res.error)
    else
      self:log("removed what an interrupted apply left of NR %s: %s", res.net_id,
        table.concat(res.changes or {}, "; "))
    end
  end
  for key, res in pairs(r.containers or {}) do
    if res.error then
      self:log("container %s: %s", key, res.error)
    elseif count_changes(res.changes) > 0 then
      self:log("%s container %s: %s", first and "restored" or "repaired", key, table.concat(res.changes, "; "))
      if not first then self.metrics:add("zmesh_repairs_total", { object = "container" }, #res.changes) end
    end
  end
  local pending = {}
  for _, p in ipairs(r.pending or {}) do pending[p.net_id .. "/" .. p.netns] = true end
  for key in pairs(pending) do
    if not self.pending[key] then self:log("container %s: its namespace does not exist; pending", key) end
  end
  self.pending = pending
  -- Each problem once (a set-aside file is reported by every converge).
  for _, line in ipairs(r.problems or {}) do
    if not self.problem_seen[line] then
      self.problem_seen[line] = true
      self.problems[#self.problems + 1] = line
      self:log("state: %s", line)
    end
  end
  self.metrics:set("zmesh_containers_pending", nil, #(r.pending or {}))
  self.metrics:set("zmesh_store_problems", nil, #self.problems)
  if first then self:log("boot restore: %d NRs converged in %.3f s", stored, took) end
end

-- ---- reads ----

function D:status()
  local nrs = {}
  for id, s in pairs(self.nr_state) do
    local b = self.backoff[id]
    nrs[id] = {
      state = b and "backing off" or s.state,
      error = b and b.error or s.error,
      retry_in = b and math.max(0, b.until_ - now()) or nil,
      failover = self.failover and self.failover:status(id) or nil,
    }
  end
  local pending = {}
  for key in pairs(self.pending) do
    local net_id, netns = key:match("^([^/]+)/(.*)$")
    pending[#pending + 1] = { net_id = net_id, netns = netns }
  end
  table.sort(pending, function(a, b) return a.net_id .. a.netns < b.net_id .. b.netns end)
  local lc = self.last_converge
  return {
    node_id = self.cfg.node_id,
    version = core.version,
    uptime = now() - self.started,
    socket = self.cfg.socket,
    ndmz_up = core.netns.exists(names.NDMZ) or false,
    -- node.stop until node.start: converges leave the node as it is.
    stopped = core.fs.stat(self.cfg.state_dir .. "/stopped") and true or nil,
    queue = { waiting = #self.queue, running = self.running and self.running.entry or json.null },
    writer = { pid = self.worker and self.worker.pid or json.null },
    converge = lc and { seconds_ago = now() - lc.at, seconds = lc.seconds, ok = lc.ok,
      error = lc.error, interval = self.cfg.reconcile_interval } or json.null,
    nrs = json.object(nrs),
    pending_containers = json.array(pending),
    problems = json.array(self.problems),
    uplink = self.dhcp and self.dhcp:status() or nil,
  }
end

function D:metrics_text()
  local m = self.metrics
  m:set("zmesh_queue_length", nil, #self.queue)
  for _, name in ipairs({ "zmesh_nrs", "zmesh_wireguard_peer_rx_bytes", "zmesh_wireguard_peer_tx_bytes",
      "zmesh_wireguard_peer_handshake_age_seconds" }) do
    m:clear(name)
  end
  local states = { ok = 0, error = 0, ["backing off"] = 0 }
  for _, s in pairs(self:status().nrs) do states[s.state] = (states[s.state] or 0) + 1 end
  for state, n in pairs(states) do m:set("zmesh_nrs", { state = state }, n) end
  local t = os.time()
  for id in pairs(self.nr_state) do
    local dev = core.netns.exists(names.nr_ns(id))
      and core.wg.get { ns = names.nr_ns(id), name = names.wg_if(id) }
    for _, p in ipairs(dev and dev.peers or {}) do
      local labels = { net_id = id, peer = p.public_key }
      m:set("zmesh_wireguard_peer_rx_bytes", labels, p.rx_bytes)
      m:set("zmesh_wireguard_peer_tx_bytes", labels, p.tx_bytes)
      if (p.last_handshake or 0) > 0 then
        m:set("zmesh_wireguard_peer_handshake_age_seconds", labels, t - p.last_handshake)
      end
    end
  end
  return m:render()
end

-- ---- HTTP ----

-- A new table per answer: a job's answer adds its X-Zmesh-Job header.
local function json_headers() return { ["Content-Type"] = "application/json" } end

local function encode(v) return json.encode(v, { pretty = true }) .. "\n" end

local function answer_of(a)
  local headers = { ["Content-Type"] = "application/json" }
  for k, v in pairs(a.headers or {}) do headers[k] = v end
  return a.status, encode(a.body), headers
end

function D:handle(req)
  local r = api.route { method = req.method, path = req.path, query = req.query or {}, body = req.body }
  if r.status then return answer_of(r) end
  if r.metrics_view then
    return 200, self:metrics_text(), { ["Content-Type"] = "text/plain; version=0.0.4" }
  end
  if r.status_view then return 200, encode(self:status()), json_headers() end
  if r.list_view then return 200, encode(json.array(entry.list())), json_headers() end
  if r.read then
    local ok, res = entry.call(r.read.entry, r.read.params)
    if not ok then return answer_of(api.failure(res)) end
    return 200, encode(res == nil and json.null or res), json_headers()
  end
  local job
  job = self:enqueue({ entry = r.job.entry, params = r.job.params, done = function(reply)
    local status, body, headers
    if reply.ok then
      local err = r.shape and r.shape(reply.result)
      if err then
        status, body, headers = answer_of(err)
      else
        status, body, headers = 200, encode(reply.result), json_headers()
      end
    else
      status, body, headers = answer_of(api.failure(reply.error,
        reply.kind and { kind = reply.kind, field = reply.field } or false))
    end
    -- The job's place in the one queue: what ran last, won.
    headers["X-Zmesh-Job"] = tostring(job.id)
    req:respond(status, body, headers)
    self:http_kick()
  end })
  -- Suspended: answered when the job is done.
end

-- Let libmicrohttpd do what is ready, and wake it when it wants to be.
function D:http_kick()
  if not self.server then return end
  self.server:run()
  local ms = self.server:timeout()
  self.http_timer:stop()
  if ms then
    self.http_timer:start(math.max(ms, 1), 0, function() self:http_kick() end)
  end
end

function D:listen()
  local dir = self.cfg.socket:match("^(.*)/[^/]+$")
  if dir and dir ~= "" then
    local ok, err = core.fs.mkdir(dir, tonumber("755", 8))
    if not ok then error(err, 0) end
  end
  local srv, err, ename = core.http.listen {
    path = self.cfg.socket, mode = tonumber("600", 8),
    handler = function(req) return self:handle(req) end,
    on_error = function(msg) self:log("http: %s", msg) end,
  }
  if not srv then
    if ename == "EADDRINUSE" then
      error(string.format("another daemon answers on %s", self.cfg.socket), 0)
    end
    error("cannot listen on " .. self.cfg.socket .. ": " .. tostring(err), 0)
  end
  self.server = srv
  self.poll = uv.new_poll(srv:fd())
  self.poll:start("r", function() self:http_kick() end)
  self.http_timer = uv.new_timer()
  self:http_kick()
end

-- ---- start and stop ----

function D:shutdown()
  if self.shut then return end
  self.shut = true
  if self.server then
    self.poll:stop()
    self.server:close()
    self.server = nil
  end
  self.reconcile_timer:stop()
  if self.worker and self.worker.alive then
    -- End of its input: the writer finishes its job (none now) and exits.
    self.worker.stdin:shutdown()
  else
    uv.stop()
  end
end

function D:stop(why)
  if self.stopping then return end
  self.stopping = true
  self:log("stopping (%s); the data plane stays as it is", why)
  -- Jobs not started are refused; the one running is finished.
  for _, job in ipairs(self.queue) do
    pcall(job.done, { ok = false, error = "the daemon is stopping" })
  end
  self.queue = {}
  if not self.running then self:shutdown() end
end

function D:reload()
  local ok, ctx = pcall(context.load, { config = self.config_path })
  if not ok then
    self:log("reload: %s (keeping the config in force)", tostring(ctx))
    return
  end
  local control_before = json.encode(self.cfg.control or json.null)
  self.cfg = ctx.cfg
  context.pin(self.cfg)
  -- Jobs queued from now on run on it.
  self:enqueue(self:pin_job())
  self.reconcile_timer:set_repeat(math.floor(self.cfg.reconcile_interval * 1000))
  self:log("reloaded %s", self.config_path)
  -- A control section added, changed or removed: the link to NATS starts
  -- over with it (what it applied is remembered in state_dir).
  if json.encode(self.cfg.control or json.null) ~= control_before then
    if self.control then
      self.control:stop()
      self.control = nil
      self:log("control: stopped (the node config changed)")
    end
    self:start_control()
  end
  self:converge()
end

-- The fleet's control plane (NATS), when the node config has one: it
-- only ever queues jobs here, and the data plane never waits for it.
function D:start_control()
  if not self.cfg.control then return end
  local ok, res = pcall(function() return require("zmesh.control").start(self) end)
  if ok then self.control = res else self:log("control: %s (running without it)", tostring(res)) end
end

-- Run the daemon until SIGTERM or SIGINT. OPTS: {config = path}.
function daemon.run(opts)
  local path = opts.config or os.getenv("ZMESH_NODE_CONFIG") or require("zmesh.node.config").DEFAULT_PATH
  context.use_config(path)
  local ctx = context.load({ config = path })
  -- This process and its writer run on this config until SIGHUP.
  context.pin(ctx.cfg)
  local self = setmetatable({
    cfg = ctx.cfg, config_path = path, queue = {}, next_id = 0, backoff = {}, nr_state = {},
    pending = {}, problems = {}, problem_seen = {}, metrics = metrics.new(), started = now(),
    exe = opts.exe or assert(core.fs.readlink("/proc/self/exe")),
  }, D)
  declare(self.metrics)
  self:start_worker()
  self:listen()
  self.reconcile_timer = uv.new_timer()
  local interval = math.floor(self.cfg.reconcile_interval * 1000)
  self.reconcile_timer:start(interval, interval, function() self:converge({ periodic = true }) end)
  for _, sig in ipairs({ "sigterm", "sigint" }) do
    local s = uv.new_signal()
    s:start(sig, function() self:stop(sig) end)
  end
  local hup = uv.new_signal()
  hup:start("sighup", function() self:reload() end)
  -- The boot restore is the first job; API calls queue behind it.
  self:converge()
  -- The uplink's DHCP and RA clients, when the node config asks for them.
  self.dhcp = require("zmesh.daemon.dhcp").start(self)
  self:start_control()
  self:log("ready: listening on %s (node %s, reconcile every %g s)", self.cfg.socket,
    self.cfg.node_id, self.cfg.reconcile_interval)
  uv.run()
  return 0
end

return daemon
