-- The fleet's control plane on a node: the daemon's link to NATS
-- JetStream (DESIGN §8). Started by the daemon when the node config has a
-- `control` section; the daemon is the only thing on the node that talks
-- to NATS, and everything this module applies goes through its queue.
--
-- It dials out (hidden nodes behind NAT take part) to any server of the
-- cluster with the node's own credentials, watches nr.<node_id>.> of the
-- bucket (zmesh.control.watch) and turns each change into one job:
-- nr.apply for a value, nr.remove for a delete marker. While a key's job
-- waits in the queue, newer revisions of that key replace its parameters
-- (one pending job per key: only the newest is applied); a revision
-- arriving while its key's job runs is applied after it.
--
-- It writes status.<node_id>.<net_id> (the generation and revision it
-- applied, the result and error of the last attempt, WireGuard peers with
-- handshake age and bytes, the aggregator and exit in use, and the
-- reachability of every other NR: zmesh.control.probe) after every apply
-- and every status_interval, and facts.<node_id> at every (re)connect and
-- whenever they change (looked at every status_interval: a DHCP lease
-- that comes after the connection, or changes, reaches the bucket).
--
-- The data plane never depends on it. With every server unreachable
-- nothing is queued, the node keeps what it applied last (the daemon's
-- durable store), and libnats reconnects with a doubling delay
-- (retry_min .. retry_max); once connected the watch starts over, which
-- delivers the newest revision of each key only. What it applied is
-- remembered in state_dir/control.json, so a restart applies nothing it
-- already has.
local uv = require "luv"
local client = require "zmesh.control.client"
local core = require "zmesh.core"
local entry = require "zmesh.entry"
local json = require "zmesh.json"
local kv = require "zmesh.control.kv"
local names = require "zmesh.node.names"
local probe = require "zmesh.control.probe"
local store = require "zmesh.node.store"
local watch = require "zmesh.control.watch"

local control = {}

local A = {}
A.__index = A

control.STATUS_FORMAT = 1
local APPLY_RETRY_MIN, APPLY_RETRY_MAX = 5, 300

local function now() return uv.now() / 1000 end

local function ms(seconds) return math.max(1, math.floor(seconds * 1000 + 0.5)) end

-- The inbox prefix of NODE_ID: its NATS user may subscribe only there.
function control.inbox(node_id) return "_INBOX_" .. node_id end

-- The connect options for a node's control section CFG.
function control.connect_options(node_id, cfg)
  return {
    servers = cfg.urls, name = "zmesh-" .. node_id, inbox_prefix = control.inbox(node_id),
    nkey_seed_file = cfg.nkey, creds_file = cfg.creds, user = cfg.user, password_file = cfg.password_file,
    background = true, timeout = ms(cfg.connect_timeout or 2), reconnect_min = ms(cfg.retry_min),
    reconnect_max = ms(cfg.retry_max), ping_interval = ms(cfg.ping_interval or 3), max_pings_out = 2,
  }
end

local function declare(m)
  m:declare("zmesh_control_connected", "gauge", "1 while connected to a NATS server")
  m:declare("zmesh_control_connects_total", "counter", "connections and reconnections to NATS")
  m:declare("zmesh_control_updates_total", "counter", "revisions of this node's keys received, by kind")
  m:declare("zmesh_control_coalesced_total", "counter",
    "revisions that replaced the parameters of a job still waiting (never applied themselves)")
  m:declare("zmesh_control_applies_total", "counter", "jobs the control plane queued, by entry point and result")
  m:declare("zmesh_control_watch_restarts_total", "counter", "times the watch started over")
  m:declare("zmesh_control_status_writes_total", "counter", "status and facts writes, by result")
  m:declare("zmesh_control_in_step", "gauge",
    "1 once the watch delivered the newest revision of every key of this node (since the last (re)connect)")
end

-- ---- the record of what was applied (state_dir/control.json) ----

function A:load_record()
  local problems = {}
  local data = store.read(self.record_path, "control", problems)
  for _, p in ipairs(problems) do self.d:log("control: %s", p) end
  self.record = type(data) == "table" and data or {}
  self.record.keys = type(self.record.keys) == "table" and self.record.keys or {}
end

function A:save_record()
  local ok, err = pcall(store.write, self.record_path, "control",
    { keys = json.object(self.record.keys) }, { unless_same = true })
  if not ok then self.d:log("control: cannot save %s: %s", self.record_path, tostring(err)) end
end

-- ---- start ----

function control.start(d, opts)
  opts = opts or {}
  local cfg = d.cfg.control
  local self = setmetatable({
    d = d, cfg = cfg, node = d.cfg.node_id, bucket = cfg.bucket,
    record_path = d.cfg.state_dir .. "/control.json",
    pending = {}, results = {}, seen = {}, reach = {}, status_busy = {}, status_due = {},
    retry = {}, probing = {},
    -- What facts.<node_id> says (ok, facts); a test gives its own.
    facts = opts.facts or function() return entry.call("node.facts", json.object()) end,
  }, A)
  declare(d.metrics)
  self:load_record()
  -- What was applied before (this daemon or an earlier one) is known.
  for net_id, r in pairs(self.record.keys) do
    self.seen[net_id] = r.revision
    self.results[net_id] = { generation = r.generation, revision = r.revision, ok = true,
      entry = "nr.apply", at = r.at }
  end
  local cl, err = (opts.connect or client.connect)(control.connect_options(self.node, cfg), opts.core)
  if not cl then error("cannot set up the NATS connection: " .. tostring(err), 0) end
  self.cl = cl
  cl.log = function(...) d:log(...) end
  cl.on_state = function(state, url) self:state(state, url) end
  cl.on_overflow = function(n) self.watch:start(string.format("%d events dropped", n)) end
  self.watch = watch.new {
    client = cl, bucket = self.bucket, filter = "nr." .. self.node .. ".>", inbox = control.inbox(self.node),
    on_entry = function(e) self:update(e) end,
    on_synced = function() self:synced() end,
    log = function(...) d:log(...) end,
    retry_min = cfg.retry_min, retry_max = cfg.retry_max,
  }
  self.watch.running = true
  if not opts.no_loop then
    self.poll = uv.new_poll(cl:fd())
    self.poll:start("r", function() cl:dispatch() end)
    self.timer = uv.new_timer()
    self.timer:start(1000, 1000, function()
      local ok, terr = pcall(self.tick, self)
      if not ok then d:log("control: %s", tostring(terr)) end
    end)
  end
  d:log("control: NATS %s, bucket %s, watching nr.%s.>", table.concat(cfg.urls, ","), self.bucket, self.node)
  return self
end

function A:stop()
  if self.poll then self.poll:stop() self.poll:close() end
  if self.timer then self.timer:stop() self.timer:close() end
  self.watch:stop()
  self.cl:close()
  -- Closed on purpose raises no state event: the gauges say it here.
  self.d.metrics:set("zmesh_control_connected", nil, 0)
  self.d.metrics:set("zmesh_control_in_step", nil, 0)
end

-- ---- the connection ----

function A:state(state, url)
  local m = self.d.metrics
  if state == "connected" or state == "reconnected" then
    m:set("zmesh_control_connected", nil, 1)
    m:add("zmesh_control_connects_total")
    self.d:log("control: %s to %s", state, tostring(url))
    self.watch:start(state)
    self.facts_sent = nil
    self:publish_facts()
    for net_id in pairs(self.results) do self.status_due[net_id] = true end
  elseif state == "disconnected" then
    m:set("zmesh_control_connected", nil, 0)
    -- The old consumer's backlog must not arrive after a reconnect: the
    -- watch starts over then, with the newest revision of each key.
    self.watch:drop()
    self.d:log("control: disconnected from NATS; the node keeps what it applied, reconnecting")
  elseif state == "closed" then
    m:set("zmesh_control_connected", nil, 0)
  end
end

function A:synced()
  self.d.metrics:set("zmesh_control_in_step", nil, 1)
  self.d:log("control: in step with the bucket (%d keys of this node)", self:count_keys())
end

function A:count_keys()
  local n = 0
  for _ in pairs(self.seen) do n = n + 1 end
  return n
end

-- ---- revisions → jobs ----

local function net_of(node, key)
  local n, net_id = key:match("^nr%.([^.]+)%.([^.]+)$")
  if n ~= node or not names.valid_net_id(net_id) then return nil end
  return net_id
end

-- The generation revision E carries (its config's, or a delete's header).
local function generation_of(e)
  if e.op == "put" then
    local cfg = json.decode(e.value or "")
    return type(cfg) == "table" and math.tointeger(cfg.generation) or nil
  end
  local gen = tonumber(e.headers and e.headers["Zmesh-Generation"])
  return gen and math.tointeger(gen)
end

-- A bucket lost and made again numbers its revisions from 1: a revision
-- at or below the one last seen is still new when it carries a newer
-- generation than the one last applied or tried for the key.
local function newer_generation(self, net_id, e)
  local gen = generation_of(e)
  local last = (self.results[net_id] and self.results[net_id].generation)
    or (self.record.keys[net_id] and self.record.keys[net_id].generation)
  -- Nothing applied or tried for the key (its NR was removed): within one
  -- stream a put after the delete has a higher revision, so a lower one
  -- with a generation comes from a new stream.
  if gen == nil then return false end
  if last == nil then return (e.revision or 0) < (self.seen[net_id] or 0) end
  return gen > last
end

-- One revision E of one of this node's keys.
function A:update(e)
  local m = self.d.metrics
  local net_id = net_of(self.node, e.key)
  if not net_id then
    self.d:log("control: ignoring key %s (not nr.%s.<net_id>)", tostring(e.key), self.node)
    return
  end
  local rev = e.revision or 0
  if rev <= (self.seen[net_id] or 0) and not newer_generation(self, net_id, e) then return end
  self.seen[net_id] = rev
  m:add("zmesh_control_updates_total", { kind = e.op })
  if e.op ~= "put" then
    local gen = tonumber(e.headers and e.headers["Zmesh-Generation"])
    return self:want(net_id, { entry = "nr.remove", params = { net_id = net_id }, revision = rev,
      generation = gen and math.tointeger(gen) })
  end
  local cfg, err = json.decode(e.value or "")
  local problem
  if type(cfg) ~= "table" or json.kind(cfg) == "array" then
    problem = "revision " .. rev .. " is not a JSON object: " .. tostring(err or "")
  elseif cfg.node_id ~= nil and cfg.node_id ~= self.node then
    problem = string.format("revision %d is for node %s, not %s", rev, tostring(cfg.node_id), self.node)
  elseif cfg.net_id ~= net_id then
    problem = string.format("revision %d is for NR %s, not %s", rev, tostring(cfg.net_id), net_id)
  end
  local gen = type(cfg) == "table" and math.tointeger(cfg.generation) or nil
  if problem then
    self.d:log("control: nr.%s.%s: %s", self.node, net_id, problem)
    self.results[net_id] = { generation = gen, revision = rev, ok = false, error = problem, entry = "nr.apply",
      at = os.time(), applied = self.results[net_id] and self.results[net_id].applied }
    return self:publish_status(net_id)
  end
  self:want(net_id, { entry = "nr.apply", params = cfg, revision = rev, generation = gen })
end

-- Queue W ({entry, params, revision, generation}) for NET_ID: one job per
-- key; a newer revision replaces the parameters of a job not yet started.
function A:want(net_id, w)
  local p = self.pending[net_id]
  self.retry[net_id] = nil
  if p and p.job and not p.job.started then
    p.job.entry, p.job.params, p.want = w.entry, w.params, w
    self.d.metrics:add("zmesh_control_coalesced_total", { net_id = net_id })
    return
  end
  if p then
    if p.next then self.d.metrics:add("zmesh_control_coalesced_total", { net_id = net_id }) end
    p.next = w
    return
  end
  self:submit(net_id, w)
end

function A:submit(net_id, w)
  local p = { want = w }
  self.pending[net_id] = p
  p.job = self.d:enqueue { entry = w.entry, params = w.params, done = function(reply)
    self:applied(net_id, p, reply)
  end }
end

function A:applied(net_id, p, reply)
  local w = p.want
  self.pending[net_id] = nil
  local m = self.d.metrics
  m:add("zmesh_control_applies_total", { entry = w.entry, result = reply.ok and "ok" or "error" })
  local prev = self.results[net_id] or {}
  local r = { generation = w.generation, revision = w.revision, ok = reply.ok, entry = w.entry,
    error = not reply.ok and tostring(reply.error) or nil, at = os.time() }
  if reply.ok and w.entry == "nr.apply" then
    r.applied = { generation = w.generation, revision = w.revision, at = r.at }
    self.record.keys[net_id] = { revision = w.revision, generation = w.generation, at = r.at }
    self.config = self.config or {}
    self.config[net_id] = w.params
    -- What was measured under the old config says nothing of the new:
    -- the status says no reach until the next probe, which comes at once.
    if not prev.applied or prev.applied.generation ~= w.generation then
      self.reach[net_id], self.last_round = nil, nil
    end
    self.d:log("control: applied nr.%s.%s revision %d (generation %s)", self.node, net_id, w.revision,
      tostring(w.generation))
  elseif reply.ok then
    self.record.keys[net_id] = nil
    if self.config then self.config[net_id] = nil end
    self.reach[net_id] = nil
    self.d:log("control: removed NR %s (key nr.%s.%s deleted)", net_id, self.node, net_id)
  else
    r.applied = prev.applied
    self.d:log("control: nr.%s.%s revision %d: %s", self.node, net_id, w.revision, tostring(reply.error))
    if not p.next then
      local b = self.retry_backoff or {}
      self.retry_backoff = b
      b[net_id] = math.min((b[net_id] or APPLY_RETRY_MIN / 2) * 2, APPLY_RETRY_MAX)
      self.retry[net_id] = { at = now() + b[net_id], want = w }
    end
  end
  if reply.ok and self.retry_backoff then self.retry_backoff[net_id] = nil end
  self.results[net_id] = r
  self:save_record()
  if p.next then
    self:submit(net_id, p.next)
  else
    self:publish_status(net_id)
  end
end

-- ---- status and facts ----

function A:config_of(net_id)
  if self.config and self.config[net_id] then return self.config[net_id] end
  -- Applied by an earlier daemon: the stored desired state says it.
  local path = self.d.cfg.state_dir .. "/nrs/" .. net_id .. ".json"
  local data = store.read(path, "nr", {})
  if data then
    self.config = self.config or {}
    self.config[net_id] = data
  end
  return data
end

-- The status document of NET_ID (nothing secret in it).
function A:status_doc(net_id)
  local r = self.results[net_id] or {}
  local cfg = self:config_of(net_id)
  local applied = r.applied or (r.ok and r.entry == "nr.apply" and r) or nil
  local dstate = (self.d:status().nrs or {})[net_id]
  local doc = {
    format = control.STATUS_FORMAT, node_id = self.node, net_id = net_id,
    generation = applied and applied.generation or json.null,
    revision = applied and applied.revision or json.null,
    applied_at = applied and applied.at or json.null,
    result = (self.pending[net_id] and "pending") or (r.ok == false and "error") or (r.ok and "ok") or "unknown",
    error = r.error or json.null,
    wanted = (r.revision and (not applied or r.revision ~= applied.revision))
      and { generation = r.generation or json.null, revision = r.revision } or json.null,
    nr_state = dstate and dstate.state or json.null,
    updated_at = os.time(), version = core.version,
    -- So that `net check` can tell a node that stopped publishing.
    status_interval = self.cfg.status_interval or 10,
  }
  local peers = {}
  local dev = core.netns.exists(names.nr_ns(net_id))
    and core.wg.get { ns = names.nr_ns(net_id), name = names.wg_if(net_id) }
  local by_key = {}
  for _, p in ipairs(cfg and cfg.peers or {}) do by_key[p.wireguard_public_key] = p.node_id end
  local t = os.time()
  for _, p in ipairs(dev and dev.peers or {}) do
    peers[#peers + 1] = {
      node_id = by_key[p.public_key] or json.null, endpoint = p.endpoint or json.null,
      handshake_age = (p.last_handshake or 0) > 0 and (t - p.last_handshake) or json.null,
      rx_bytes = p.rx_bytes, tx_bytes = p.tx_bytes,
      routes = #(p.allowed_ips or {}),
    }
  end
  table.sort(peers, function(a, b) return tostring(a.node_id) < tostring(b.node_id) end)
  doc.peers = json.array(peers)
  local fo = self.d.failover and self.d.failover.status and self.d.failover:status(net_id)
  if fo then
    doc.aggregator, doc.exit = fo.aggregator or json.null, fo.exit or json.null
  elseif cfg then
    local f = type(cfg.failover) == "table" and cfg.failover or {}
    doc.aggregator = (f.role == "hidden" and f.aggregators and f.aggregators[1]) or json.null
    doc.exit = json.null
    if cfg.exit_for_network then doc.exit = self.node end
    if cfg.exit == "mesh" then
      for _, p in ipairs(cfg.peers or {}) do
        for _, a in ipairs(p.allowed_ips or {}) do
          if a == "0.0.0.0/0" then doc.exit = p.node_id or json.null end
        end
      end
    end
  end
  local reach = {}
  for id, x in pairs(self.reach[net_id] or {}) do reach[id] = x end
  doc.reach = json.object(reach)
  return doc
end

function A:publish_status(net_id)
  if not self.cl:connected() then return end
  if self.status_busy[net_id] then
    self.status_due[net_id] = true
    return
  end
  self.status_due[net_id] = nil
  local ok, doc = pcall(self.status_doc, self, net_id)
  if not ok then
    self.d:log("control: status of %s: %s", net_id, tostring(doc))
    return
  end
  local key = kv.status_key(self.node, net_id)
  local args
  if doc.result == "ok" and self.results[net_id] and self.results[net_id].entry == "nr.remove" then
    args = kv.delete_args(self.bucket, key, { timeout = 5000 })
  else
    args = kv.put_args(self.bucket, key, json.encode(doc), { timeout = 5000 })
  end
  self.status_busy[net_id] = true
  self.cl:call_async("publish", args, function(e)
    self.status_busy[net_id] = nil
    self.d.metrics:add("zmesh_control_status_writes_total", { result = e.ok and "ok" or "error" })
    if not e.ok and self.cl:connected() then
      self.d:log("control: writing %s: %s", key, tostring(e.error))
    end
    if e.ok and self.results[net_id] and self.results[net_id].entry == "nr.remove" and self.results[net_id].ok then
      self.results[net_id] = nil
    end
    if self.status_due[net_id] then self:publish_status(net_id) end
  end)
end

function A:publish_facts()
  if self.facts_busy or not self.cl:connected() then return end
  local ok, facts = self.facts()
  if not ok then return end  -- no node key yet: the next round tries again
  local value = json.encode(facts)
  if value == self.facts_sent then return end
  self.facts_busy = true
  local key = kv.facts_key(self.node)
  self.cl:call_async("publish", kv.put_args(self.bucket, key, value, { timeout = 5000 }), function(e)
    self.facts_busy = false
    self.d.metrics:add("zmesh_control_status_writes_total", { result = e.ok and "ok" or "error" })
    if e.ok then self.facts_sent = value else self.d:log("control: writing %s: %s", key, tostring(e.error)) end
  end)
end

-- ---- the clock ----

function A:probe_all()
  for net_id in pairs(self.results) do
    local cfg = not self.probing[net_id] and self:config_of(net_id)
    if not self.probing[net_id] and not (cfg and self.results[net_id].entry == "nr.apply"
        and core.netns.exists(names.nr_ns(net_id))) then
      -- Nothing to probe (its apply failed, it is being removed, its
      -- namespace is gone): its status is written all the same, so that
      -- it is not taken for stale, and with nothing measured.
      self.reach[net_id] = nil
      self:publish_status(net_id)
    elseif cfg then
      self.probing[net_id] = true
      local targets, routed = probe.targets(cfg), probe.subnet_addrs(cfg)
      probe.run(net_id, targets, function(res)
        self.probing[net_id] = nil
        if not res or not self.results[net_id] then return end
        local dev = core.netns.exists(names.nr_ns(net_id))
          and core.wg.get { ns = names.nr_ns(net_id), name = names.wg_if(net_id) }
        local by_key = {}
        for _, p in ipairs(cfg.peers or {}) do by_key[p.wireguard_public_key] = p.node_id end
        local t = os.time()
        for id, x in pairs(res) do
          local via = dev and probe.peer_for(dev.peers, routed[id] or targets[id])
          local hop = via and by_key[via.public_key]
          x.path = (hop == nil and json.null) or (hop == id and "direct") or ("via " .. hop)
          x.at = t
          if x.rtt_ms == nil then x.rtt_ms = json.null end
        end
        self.reach[net_id] = res
        self:publish_status(net_id)
      end)
    end
  end
end

function A:tick()
  self.watch:tick()
  local t = now()
  for net_id, r in pairs(self.retry) do
    if t >= r.at and not self.pending[net_id] then
      self.retry[net_id] = nil
      self:submit(net_id, r.want)
    end
  end
  self.d.metrics:set("zmesh_control_watch_restarts_total", nil, self.watch.restarts)
  self.d.metrics:set("zmesh_control_in_step", nil, (self.watch.synced and self.watch.sid) and 1 or 0)
  if not self.cl:connected() then return end
  for net_id in pairs(self.status_due) do self:publish_status(net_id) end
  local interval = self.cfg.status_interval or 10
  if not self.last_round or t - self.last_round >= interval then
    self.last_round = t
    self:publish_facts()
    self:probe_all()
  end
end

-- What the daemon's status can show of the control plane.
function A:summary()
  return { connected = self.cl:connected(), state = self.cl.state, watching = self.watch.live or false,
    synced = self.watch.synced or false, keys = self:count_keys(), restarts = self.watch.restarts,
    last_error = self.watch.last_error }
end

return control
