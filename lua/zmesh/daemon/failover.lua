-- Healing from data-plane evidence: the daemon probes, through the
-- tunnels, what its own NRs' routing decisions need (zmesh.nr.paths:
-- the aggregators a hidden NR may route through, the aggregators and
-- exits a public NR may send to, the hidden NRs an aggregator serves), and
-- moves traffic between the alternatives the network tool rendered when a
-- path stops answering — nothing is re-rendered, no user acts.
--
-- Probes are ICMP echo requests from the NR's mesh address to the peer's
-- (zmesh.core.probe): the far kernel answers, so liveness does not depend
-- on the far daemon. A probe's payload carries the sender's state, which
-- the far daemon reads on its raw socket:
--
--   zm1 id=<node> up=<aggregator in use> inet=<0|1> ex=<exit> srv=<h,…> q=1
--
-- up: a hidden NR's aggregator in use (its candidates route to it
-- directly); inet: an exit candidate's own Internet, from pinging the
-- failover policy's targets through its node's uplink; ex: the exit an
-- aggregator sends the Internet to (a hidden NR's traffic goes where its
-- aggregator sends it, so that is its exit too); srv: the hidden NRs
-- an aggregator serves although a candidate before it answers (a hidden NR
-- cut off from its primary alone); q=1 asks the far daemon to send its
-- state back (a probe of its own). When a daemon is down its NR still
-- answers, and what it last said is kept: the rest of the mesh neither
-- moves away from it nor learns anything new.
--
-- A target is down after `dead_after` seconds without an answer, and up
-- again after answering for `hold` seconds without a gap (policy
-- "failover"). Each NR's choice is then zmesh.nr.paths' function of it;
-- when the AllowedIPs it gives change, one job (nr.failover) stores the
-- choice in state_dir and re-applies the NR with it — through the queue,
-- like every change.
local uv = require "luv"
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local json = require "zmesh.json"
local names = require "zmesh.node.names"
local nr_config = require "zmesh.nr.config"
local paths = require "zmesh.nr.paths"
local store = require "zmesh.node.store"
local policy = require "zmesh.policy"

local failover = {}

local DATA_MAX = 250

local F = {}
F.__index = F

local function now() return uv.now() / 1000 end

-- ---- the policy ----

local contract = { hooks = { "settings" } }

local function number(v, lo, hi) return type(v) == "number" and v == v and v >= lo and v <= hi end

-- The failover settings for CFG (validated), from the policy.
function failover.settings(policy_dirs, ctx)
  local p, err = policy.load("failover", contract, { path = policy_dirs })
  if not p then error("failover policy: " .. tostring(err), 0) end
  local s = policy.call(p, "settings", ctx)
  local function breach(fmt, ...) policy.breach(p, "settings", fmt, ...) end
  if type(s) ~= "table" then breach("returned %s, not a table", type(s)) end
  if not number(s.interval, 0.05, 10) then breach("interval must be 0.05..10 s") end
  if not number(s.dead_after, 2 * s.interval, 600) then breach("dead_after must be 2 × interval..600 s") end
  if not number(s.hold, 0, 3600) then breach("hold must be 0..3600 s") end
  if type(s.fail_back) ~= "boolean" then breach("fail_back must be true or false") end
  if type(s.internet_targets) ~= "table" or #s.internet_targets < 1 or #s.internet_targets > 8 then
    breach("internet_targets must be a list of 1..8 IPv4 addresses")
  end
  for _, a in ipairs(s.internet_targets) do
    if type(a) ~= "string" or not a:match("^%d+%.%d+%.%d+%.%d+$") then
      breach("internet_targets: %s is not an IPv4 address", tostring(a))
    end
  end
  return s
end

-- ---- payloads ----

-- STATE.srv (a public NR: the hidden NRs it serves out of order) is
-- always said, also when empty ("srv=-"): silence must not keep an old
-- list alive at the receivers. A list too long for one probe is cut
-- ("more=1") and said in turns (the sender rotates it).
function failover.encode(state)
  local parts = { "zm1", "id=" .. state.id }
  if state.up then parts[#parts + 1] = "up=" .. state.up end
  if state.inet ~= nil then parts[#parts + 1] = "inet=" .. (state.inet and "1" or "0") end
  if state.ex then parts[#parts + 1] = "ex=" .. state.ex end
  if state.q then parts[#parts + 1] = "q=1" end
  local text = table.concat(parts, " ")
  if state.srv then
    local list, more = {}, false
    for _, h in ipairs(state.srv) do
      if #text + 13 + #table.concat(list, ",") + #h + 1 > DATA_MAX then more = true break end
      list[#list + 1] = h
    end
    text = text .. " srv=" .. (#list > 0 and table.concat(list, ",") or "-") .. (more and " more=1" or "")
  end
  return text
end

function failover.decode(data)
  if type(data) ~= "string" or data:sub(1, 4) ~= "zm1 " then return nil end
  local s = {}
  for k, v in data:gmatch("(%a+)=(%S+)") do s[k] = v end
  if not s.id then return nil end
  local out = { id = s.id, up = s.up, ex = s.ex, q = s.q == "1" }
  if s.inet then out.inet = s.inet == "1" end
  if s.srv then
    out.srv = {}
    if s.srv ~= "-" then
      for h in s.srv:gmatch("[^,]+") do out.srv[#out.srv + 1] = h end
    end
    out.more = s.more == "1"
  end
  return out
end

-- ---- health of one target ----

local Health = {}
Health.__index = Health

-- A target that never answered yet gets this long before it counts as
-- down: a fresh NR's first handshakes (and a userspace WireGuard seeing
-- its link up, by polling) take seconds, and moving traffic away from a
-- primary that is merely starting would break paths for nothing.
local STARTUP_GRACE = 10

local function new_health(t0, s)
  -- Unknown counts as up: a fresh daemon keeps the paths it found.
  return setmetatable({ last = t0, up = true, streak = t0, gap = s.dead_after, fresh = true }, Health)
end

function Health:answered(t)
  if t - self.last > self.gap then self.streak = t end
  self.last, self.fresh = t, false
end

-- Update and return whether it answers now: down after dead_after
-- without an answer, up again at its first answer. (The hold time gates
-- only preference, in F:decide: moving traffic back to it.)
function Health:check(t, s)
  self.gap = s.dead_after
  local limit = self.fresh and math.max(s.dead_after, STARTUP_GRACE) or s.dead_after
  if self.up and t - self.last > limit then
    self.up = false
    return false, "down"
  end
  if not self.up and t - self.last <= s.dead_after then
    self.up = true
    return true, "up"
  end
  return self.up
end

-- Answering for the hold time without a gap: traffic may move back to it.
function Health:held(t, s) return self.up and t - self.streak >= s.hold end

-- ---- one NR ----

local NR = {}
NR.__index = NR

function F:nr_state(id, cfg)
  local n = self.nrs[id]
  if n and n.cfg_text == cfg.text then return n end
  local f = cfg.cfg.failover
  n = n or { id = id, health = {}, seq = 0, probe_id = math.random(1, 0xfffe), via = {}, served = {},
    inet = {}, said = {}, arrived = {}, exit_of = {} }
  n.cfg, n.cfg_text, n.f = cfg.cfg, cfg.text, f
  n.targets = paths.targets(cfg.cfg)
  -- Whose state (not only liveness) this NR's decisions need: the
  -- aggregators (what they serve out of order) and the exits (their
  -- Internet). Only those are asked to say it back.
  n.ask = {}
  for _, e in ipairs(f.exits or {}) do n.ask[e] = true end
  if f.role == "public" then
    for _, h in ipairs(f.hidden or {}) do
      for _, a in ipairs(f.nodes[h].aggregators) do n.ask[a] = true end
    end
  end
  n.by_addr = {}
  for target, addr in pairs(n.targets) do
    n.by_addr[addr] = target
    n.health[target] = n.health[target] or new_health(now(), self.s)
  end
  -- Hidden NRs it serves: alive while their probes arrive; probed only
  -- when they fall silent (their daemon may be down, not their path).
  n.watched = paths.watched(cfg.cfg)
  for h, addr in pairs(n.watched) do
    n.by_addr[addr] = h
    n.health[h] = n.health[h] or new_health(now(), self.s)
  end
  self.nrs[id] = setmetatable(n, NR)
  return n
end

function F:open(n)
  if n.probe then n.poll:stop() n.poll:close() n.probe:close() end
  n.probe, n.poll = nil, nil
  local mesh = n.cfg.mesh_address:match("^([^/]+)")
  local p, err = core.probe.open(names.nr_ns(n.id), mesh)
  if not p then
    self.d:log("failover: NR %s: cannot probe: %s", n.id, tostring(err))
    return
  end
  n.probe = p
  n.poll = uv.new_poll(p:fd())
  n.poll:start("r", function() self:receive(n) end)
end

-- What N says about itself in its probes.
function F:my_state(n, q)
  local st = { id = n.cfg.node_id, q = q }
  if n.f.role == "hidden" then st.up = n.choice and n.choice.upstream end
  local me = n.cfg.node_id
  for _, e in ipairs(n.f.exits or {}) do
    if e == me then st.inet = self.inet_ok end
  end
  if n.f.role == "public" and n.f.hidden and #n.f.hidden > 0 then st.ex = n.choice and n.choice.exit end
  if n.f.role == "public" then
    local all = n.choice and paths.served_out_of_order(n.f, n.choice, me) or {}
    -- And those that came lately: where the others may still send them
    -- elsewhere for a while (their views catch up within a hold time).
    local listed = {}
    for _, h in ipairs(all) do listed[h] = true end
    local t = now()
    for h, since in pairs(n.arrived) do
      if t - since > self.s.hold + 2 * self.s.dead_after then
        n.arrived[h] = nil
      elseif not listed[h] and n.via[h] == me and n.health[h] and n.health[h].up then
        -- (Only while it still reaches us: what it said last may be old.)
        all[#all + 1] = h
      end
    end
    -- Rotated, so that a list longer than a probe holds is said in full
    -- over a few probes.
    st.srv = {}
    if #all > 0 then
      n.rot = (n.rot or 0) % #all + 1
      for i = 0, #all - 1 do st.srv[#st.srv + 1] = all[(n.rot - 1 + i) % #all + 1] end
    end
  end
  return st
end

function F:send(n, addr, q)
  if not n.probe then return end
  n.seq = (n.seq + 1) % 0x10000
  local data = failover.encode(self:my_state(n, q))
  local ok = n.probe:send(addr, n.probe_id, n.seq, data)
  self.d.metrics:add("zmesh_probes_sent_total", { net_id = n.id })
  self.d.metrics:add("zmesh_probe_bytes_total", { net_id = n.id }, 28 + #data)
  return ok
end

function F:receive(n)
  local msgs = n.probe and n.probe:recv()
  if not msgs then return end
  local t = now()
  for _, m in ipairs(msgs) do
    local target = n.by_addr[m.from]
    if m.reply then
      if m.id == n.probe_id and target then n.health[target]:answered(t) end
    else
      local st = failover.decode(m.data)
      if st then
        -- A probe from a peer is also a sign of life of the path.
        if target then n.health[target]:answered(t) end
        if st.up then
          if st.up == n.cfg.node_id and n.via[st.id] ~= st.up then n.arrived[st.id] = t end
          n.via[st.id] = st.up
        end
        if st.inet ~= nil then n.inet[st.id] = st.inet end
        if st.ex then n.exit_of[st.id] = st.ex end
        if st.srv then
          -- A whole list replaces what that aggregator said before; a
          -- part of a long one adds to it.
          local set = st.more and (n.served[st.id] or {}) or {}
          for _, h in ipairs(st.srv) do set[h] = true end
          n.served[st.id] = set
        end
        -- Asked for our state: at most once per interval per asker.
        if st.q and (n.said[m.from] or 0) + self.s.interval <= t then
          n.said[m.from] = t
          self:send(n, m.from, false)
        end
      end
    end
  end
end

-- The choice the evidence gives now, keeping what holds (hysteresis).
function F:decide(n, t)
  local s, f, me = self.s, n.f, n.cfg.node_id
  local alive = {}
  for target, h in pairs(n.health) do
    local up, change = h:check(t, s)
    if not up then alive[target] = false end
    if change then
      self.d:log("failover: NR %s: %s %s", n.id, target, change == "down"
        and string.format("stopped answering (%.1f s)", t - h.last) or "answers again")
    end
  end
  local prev = n.choice or {}
  -- Routing follows who answers now (alive); the preference — which
  -- aggregator a hidden NR routes through, which exit — moves back to an
  -- earlier candidate only once it has answered for the hold time.
  local choice = { alive = alive, via = n.via, served = n.served }
  local function held(c) return n.health[c] == nil or n.health[c]:held(t, s) end
  local function pick(list, ok, current)
    if current and ok(current) then
      if not s.fail_back then return current end
      for _, c in ipairs(list) do
        if c == current then return current end
        if ok(c) and held(c) then return c end
      end
      return current
    end
    for _, c in ipairs(list) do if ok(c) then return c end end
    return current or list[1]
  end
  if f.role == "hidden" then
    choice.upstream = pick(f.aggregators, function(a) return alive[a] ~= false end, prev.upstream)
  end
  local candidate = false
  for _, e in ipairs(f.exits or {}) do candidate = candidate or e == me end
  if f.role == "hidden" and not candidate and f.exits and #f.exits > 0 then
    -- Its Internet goes where its aggregator sends it: that one's word.
    local said = n.exit_of[choice.upstream]
    local listed = false
    for _, e in ipairs(f.exits) do listed = listed or e == said end
    choice.exit = listed and said or prev.exit or f.exits[1]
  elseif f.exits and #f.exits > 0 then
    local function exit_ok(e)
      if e == me then return self.inet_ok ~= false end
      return alive[e] ~= false and n.inet[e] ~= false
    end
    local e = pick(f.exits, exit_ok, prev.exit)
    -- No candidate reaches the Internet: every node takes the first, so
    -- that none sends ::/0 to one that sends it back.
    local any = false
    for _, c in ipairs(f.exits) do any = any or exit_ok(c) end
    choice.exit = any and e or f.exits[1]
  end
  return choice
end

-- The part of a choice that changes the kernel: the peers' AllowedIPs,
-- keepalives and the exit, as text.
local function signature(cfg, choice)
  local r = paths.resolve(cfg, choice)
  local parts = { r.exit, tostring(r.exit_for_network) }
  for _, p in ipairs(r.peers) do
    parts[#parts + 1] = p.public_key .. "=" .. table.concat(p.allowed_ips, ",") .. "/" ..
      tostring(p.persistent_keepalive)
  end
  return table.concat(parts, ";")
end

-- Choices as stored (only what the routing needs: JSON-able).
local function stored(choice)
  local alive = {}
  for k, v in pairs(choice.alive or {}) do if v == false then alive[k] = false end end
  local served = {}
  for a, set in pairs(choice.served or {}) do
    local list = {}
    for h in pairs(set) do list[#list + 1] = h end
    table.sort(list)
    served[a] = json.array(list)
  end
  return { alive = json.object(alive), upstream = choice.upstream, exit = choice.exit,
    via = json.object(choice.via or {}), served = json.object(served) }
end

failover.restore = paths.from_stored

function F:tick()
  local t = now()
  for _, n in pairs(self.nrs) do
    for target, addr in pairs(n.targets) do
      -- A hidden NR asks its aggregator in use for its state (its exit).
      self:send(n, addr, n.ask[target] or (n.f.role == "hidden" and n.choice ~= nil
        and n.choice.upstream == target))
    end
    for h, addr in pairs(n.watched) do
      if t - n.health[h].last > self.s.interval * 1.5 then self:send(n, addr, false) end
    end
    local choice = self:decide(n, t)
    local sig = signature(n.cfg, choice)
    local prev = n.choice
    n.choice = choice
    local kinds = {}
    if prev and prev.upstream ~= choice.upstream then
      kinds[#kinds + 1] = "aggregator"
      self.d:log("failover: NR %s: traffic moves from aggregator %s to %s", n.id, tostring(prev.upstream),
        tostring(choice.upstream))
    end
    if prev and prev.exit ~= choice.exit then
      kinds[#kinds + 1] = "exit"
      self.d:log("failover: NR %s: the Internet exit moves from %s to %s", n.id, tostring(prev.exit),
        tostring(choice.exit))
    end
    n.carry = n.carry or {}
    if n.pending then
      -- Seen while a job runs: the next job tells it (and counts it).
      for _, k in ipairs(kinds) do n.carry[#n.carry + 1] = k end
    elseif sig ~= n.applied or #kinds > 0 or #n.carry > 0 then
      -- Also a move with nothing of this node's kernel to change (a
      -- hidden NR's exit is its aggregator's doing): the job stores it.
      local told = n.carry
      n.carry = {}
      for _, k in ipairs(kinds) do told[#told + 1] = k end
      if prev and #told == 0 then told[1] = "route" end
      n.pending = true
      self.d:enqueue({ entry = "nr.failover", params = { net_id = n.id, choice = stored(choice) },
        internal = true, done = function(reply)
          n.pending = false
          if reply.ok then
            n.applied = sig
            for _, k in ipairs(told) do
              self.d.metrics:add("zmesh_failovers_total", { net_id = n.id, kind = k })
            end
          else
            self.d:log("failover: NR %s: %s", n.id, tostring(reply.error))
            -- Told again by the job that succeeds.
            for _, k in ipairs(told) do n.carry[#n.carry + 1] = k end
          end
        end })
    end
  end
end

-- Ping the Internet through the node's uplink (for an exit candidate):
-- the network files' targets, else the policy's.
function F:check_internet()
  if not self.inet_probe then
    local p, err = core.probe.open(names.NDMZ, "0.0.0.0")
    if not p then
      -- A candidate that cannot probe cannot say it reaches the Internet
      -- (an unknown would count as yes everywhere).
      if self.inet_ok ~= false then self.d:log("failover: cannot probe the Internet: %s", tostring(err)) end
      self.inet_ok, self.inet_failed = false, true
      return
    end
    self.inet_probe = p
    self.inet_poll = uv.new_poll(p:fd())
    -- At the daemon's start the Internet is given the benefit of the
    -- doubt for dead_after; after a time without a probe, only a reply
    -- says it answers.
    self.inet_last = self.inet_failed and -math.huge or now()
    self.inet_poll:start("r", function()
      for _, m in ipairs(p:recv() or {}) do
        if m.reply and m.id == self.inet_id then self.inet_last = now() end
      end
    end)
  end
  self.inet_seq = (self.inet_seq + 1) % 0x10000
  for _, a in ipairs(self.internet_targets or self.s.internet_targets) do
    self.inet_probe:send(a, self.inet_id, self.inet_seq, "zm1 internet")
  end
  local ok = now() - self.inet_last <= self.s.dead_after
  if ok ~= self.inet_ok and self.inet_ok ~= nil then
    self.d:log("failover: this node's Internet %s", ok and "answers again" or "stopped answering")
  end
  self.inet_ok = ok
end

-- (Re)read the stored NRs with failover facts; open what is new.
-- Take up the stored NR configs: every one, or only NR ONLY's (after an
-- apply or a removal of that NR: the others did not change, and reading
-- and checking all of them per call made each apply cost O(NRs)).
function F:refresh(only)
  -- The node config in force (pinned by the daemon), not the file now.
  local ctx = context.load()
  local stored
  if only then
    stored = { [only] = store.read(context.nr_file(ctx, only), "nr", {}) }
  else
    stored = context.saved_nrs(ctx)
  end
  local seen = {}
  for id, raw in pairs(stored) do
    local ok, cfg = pcall(nr_config.validate, raw)
    if ok and cfg.failover then
      seen[id] = true
      local n = self:nr_state(id, { cfg = cfg, text = json.encode(raw) })
      if not n.choice then
        n.choice = failover.restore(context.choice(ctx, id))
        n.applied = signature(cfg, n.choice)
      end
      if not n.probe or n.reopen then
        n.reopen = false
        self:open(n)
      end
    end
  end
  for id, n in pairs(self.nrs) do
    if not seen[id] and (not only or id == only) then
      if n.probe then n.poll:stop() n.poll:close() n.probe:close() end
      self.nrs[id] = nil
    end
  end
  -- Is this node an exit candidate of any network, and what must it reach?
  local any_exit, targets = false, nil
  for _, n in pairs(self.nrs) do
    for _, e in ipairs(n.cfg.failover.exits or {}) do
      if e == n.cfg.node_id then
        any_exit = true
        for _, a in ipairs(n.cfg.failover.internet_targets or {}) do
          targets = targets or {}
          targets[#targets + 1] = a
        end
      end
    end
  end
  self.internet_targets = targets
  self.exit_candidate = any_exit
end

-- After a converge that changed NR ID (restored, repaired): its
-- namespace may be new, so its probe socket is made again.
function F:reopen(id)
  if self.nrs[id] then self.nrs[id].reopen = true end
end

function F:status(id)
  local n = self.nrs[id]
  if not n or not n.choice then return nil end
  local down = {}
  for target, h in pairs(n.health) do if not h.up then down[#down + 1] = target end end
  table.sort(down)
  return { aggregator = n.choice.upstream, exit = n.choice.exit, down = json.array(down),
    probing = (function()
      local l = {}
      for target in pairs(n.targets) do l[#l + 1] = target end
      table.sort(l)
      return json.array(l)
    end)() }
end

function failover.start(d)
  local self = setmetatable({ d = d, nrs = {}, inet_id = math.random(1, 0xfffe), inet_seq = 0 }, F)
  local ok, s = pcall(failover.settings, d.cfg.policy_dirs, { node_id = d.cfg.node_id })
  if not ok then
    d:log("%s; failover is off", tostring(s))
    return nil
  end
  self.s = s
  d.metrics:declare("zmesh_failovers_total", "counter",
    "times traffic moved to another aggregator or exit, by NR and kind")
  d.metrics:declare("zmesh_probes_sent_total", "counter", "failover probes sent, by NR")
  d.metrics:declare("zmesh_probe_bytes_total", "counter", "bytes of failover probes sent (IP and ICMP headers included)")
  self.timer = uv.new_timer()
  local ms = math.floor(s.interval * 1000)
  self.timer:start(ms, ms, function()
    local okr, err = pcall(function()
      if self.exit_candidate then self:check_internet() end
      self:tick()
    end)
    -- A fault here repeats every tick: said once a minute.
    if not okr and (self.said_err ~= err or now() - (self.said_at or 0) > 60) then
      self.said_err, self.said_at = err, now()
      d:log("failover: %s", tostring(err))
    end
  end)
  return self
end

return failover
