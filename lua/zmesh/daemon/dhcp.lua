-- The uplink's clients, supervised by the daemon: DHCP for IPv4 (udhcpc,
-- Debian's package of busybox's client) and router advertisements for
-- IPv6 (rdisc6, from ndisc6), in the ndmz, for a node config whose uplink
-- says "dhcp": true and/or "ra": true.
--
-- Neither client touches the kernel. udhcpc runs for the daemon's life
-- (it renews, rebinds and rediscovers by itself); its script only writes
-- the lease into run_dir/dhcp/lease4 (on bound and renew) and tells the
-- daemon on standard output. rdisc6 is run every refresh (a third of the
-- shortest lifetime it learnt, 3..30 s) and its answer becomes
-- run_dir/dhcp/ra6.json. What they learnt is the ndmz's desired state
-- (zmesh.node.ndmz): the daemon queues a converge, and the one writer
-- applies it like any other change. A lease past its time, or a prefix
-- past its valid lifetime, drops out of the desired state even when the
-- client is gone.
--
-- Supervision: udhcpc is started once the ndmz has its uplink, and again
-- after it ends (1 s, doubling to 60 s; back to 1 s after a minute of
-- running); one left by a daemon killed earlier is ended first (its pid
-- file). The uplink's carrier is watched every second: when it comes
-- back, the lease is renewed at once (SIGUSR1) and routers are solicited,
-- so that a node plugged into another network learns it within seconds.
-- When the uplink's addresses change, the node's facts change: logged,
-- in the status (uplink.changes), and published to the control plane.
local uv = require "luv"
local core = require "zmesh.core"
local json = require "zmesh.json"
local names = require "zmesh.node.names"
local ndmz = require "zmesh.node.ndmz"

local dhcp = {}

local C = {}
C.__index = C

local PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
local RESTART_MIN, RESTART_MAX = 1, 60
local RA_MIN, RA_MAX, RA_RETRY = 3, 30, 3

local function now() return uv.now() / 1000 end

-- udhcpc's script: it records the lease for the daemon and changes
-- nothing in the kernel (the daemon's reconcile does, from the lease).
local SCRIPT = [[#!/bin/sh
# zmesh: udhcpc's script. It changes nothing in the kernel: it records
# what the server said, and zmesh's daemon makes it the ndmz's desired state.
case "$1" in
bound|renew)
	umask 077
	f="$ZMESH_DHCP_DIR/lease4"
	printf 'event=%s\nip=%s\nmask=%s\nrouter=%s\nlease=%s\nmtu=%s\nserverid=%s\nat=%s\n' \
		"$1" "$ip" "$mask" "$router" "$lease" "$mtu" "$serverid" "$(date +%s)" > "$f.tmp" &&
		mv -f "$f.tmp" "$f"
	;;
esac
echo "zmesh-dhcp $1"
]]

-- The client id (DHCP option 61) from the node id: a node keeps its
-- lease when its ndmz is made again with a new MAC (a reboot).
local function client_id(node_id)
  return "0x3d:00" .. (("zmesh:" .. node_id):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function C:log(fmt, ...) self.d:log("uplink: " .. fmt, ...) end

-- Apply the ndmz's new desired state soon: one node.start job in the
-- daemon's queue (its one writer), and, when the uplink's MTU changed, a
-- converge of every NR (their WireGuard MTUs follow it).
function C:kick() self.want_apply = true end

function C:apply()
  local d = self.d
  if self.applying or d.stopping then return end
  self.want_apply, self.applying = false, true
  d:enqueue({ entry = "node.start", params = json.object(), internal = true, done = function(reply)
    self.applying = false
    if not reply.ok then
      self:log("applying what the uplink learnt failed: %s", tostring(reply.error))
      return
    end
    local changes = reply.result and reply.result.changes or {}
    if #changes > 0 then self:log("applied: %s", table.concat(changes, "; ")) end
    for _, c in ipairs(changes) do
      if c:find(" mtu ", 1, true) then self.want_converge = true end
    end
  end })
end

-- ---- udhcpc ----

-- End a udhcpc a killed daemon left (its pid file), if it is one.
local function end_stale(pidfile)
  local f = io.open(pidfile)
  local pid = f and tonumber(f:read("l") or "")
  if f then f:close() end
  if not pid then return end
  local cmd = io.open("/proc/" .. pid .. "/cmdline")
  local line = cmd and cmd:read("a") or ""
  if cmd then cmd:close() end
  if line:find("udhcpc", 1, true) and line:find(pidfile, 1, true) then uv.kill(pid, "sigterm") end
end

function C:start_udhcpc()
  local cfg = self.d.cfg
  local args = { "netns", "exec", names.NDMZ, "udhcpc", "-f", "-i", names.UPLINK, "-s", self.script,
    "-p", self.pidfile, "-t", "3", "-T", "2", "-A", "5", "-O", "mtu", "-C", "-x", client_id(cfg.node_id) }
  -- The last lease's address, expired or not: the server gives it again.
  local _, _, old = ndmz.lease4(cfg, math.huge)
  local addr = old and old.address
  if addr then
    args[#args + 1] = "-r"
    args[#args + 1] = addr:match("^[^/]+")
  end
  local out, err = uv.new_pipe(false), uv.new_pipe(false)
  local c = { out = out, err = err, started = now(), bound = false }
  local handle, pid = uv.spawn("ip", {
    args = args, stdio = { nil, out, err },
    env = { "PATH=" .. PATH, "ZMESH_DHCP_DIR=" .. self.dir },
  }, function(code, signal) self:udhcpc_ended(c, code, signal) end)
  if not handle then
    out:close()
    err:close()
    self:log("cannot start udhcpc: %s", tostring(pid))
    self:restart_later()
    return
  end
  c.handle, c.pid = handle, pid
  self.client = c
  local function lines(pipe, fn)
    local buf = ""
    pipe:read_start(function(e, data)
      if e or not data then return end
      buf = buf .. data
      while true do
        local line, rest = buf:match("^([^\n]*)\n(.*)$")
        if not line then break end
        buf = rest
        fn(line)
      end
    end)
  end
  lines(out, function(line)
    local event = line:match("^zmesh%-dhcp (%a+)$")
    if event then self:dhcp_event(c, event) end
  end)
  lines(err, function(line)
    -- udhcpc's own account (sending discover, lease obtained …).
    if line ~= "" and not line:find("^udhcpc: started") then self.last_udhcpc = line end
  end)
  self:log("DHCP client started (udhcpc, pid %d%s)", pid, addr and (", asking for " .. addr) or "")
end

function C:restart_later()
  if self.stopping then return end
  local delay = self.restart_delay
  self.restart_delay = math.min(delay * 2, RESTART_MAX)
  self.restarts = self.restarts + 1
  self.restart_at = now() + delay
end

function C:udhcpc_ended(c, code, signal)
  for _, h in ipairs({ c.out, c.err, c.handle }) do
    if h and not h:is_closing() then h:close() end
  end
  if self.client == c then self.client = nil end
  if self.stopping then return end
  if now() - c.started > 60 then self.restart_delay = RESTART_MIN end
  self:log("udhcpc (pid %s) ended (exit %s, signal %s)%s; starting it again in %g s", tostring(c.pid),
    tostring(code), tostring(signal), self.last_udhcpc and (": " .. self.last_udhcpc) or "", self.restart_delay)
  self:restart_later()
end

-- What udhcpc's script said: bound, renew, deconfig, leasefail, nak.
function C:dhcp_event(c, event)
  local cfg = self.d.cfg
  self.dhcp_event_name, self.dhcp_event_at = event, now()
  if event == "bound" or event == "renew" then
    local lease, why = ndmz.lease4(cfg)
    if not lease then
      self:log("DHCP %s, but the lease is unusable: %s", event, tostring(why))
      return
    end
    c.bound = true
    if event == "renew" then self.renewals = self.renewals + 1 end
    local before = self.lease and self.lease.address
    self.lease, self.dhcp_state = lease, "bound"
    if event == "bound" or before ~= lease.address then
      self:log("DHCP lease %s from %s (router %s, %d s%s)", lease.address, tostring(lease.serverid),
        tostring(lease.router or "none"), lease.seconds, lease.mtu and (", MTU " .. lease.mtu) or "")
    end
    self:kick()
  elseif event == "deconfig" then
    -- At udhcpc's start it is only its way of beginning; after a lease,
    -- the lease is gone: so is the address, now.
    if c.bound then
      c.bound = false
      self.dhcp_state = "lost"
      self:log("DHCP lease %s lost: no server renewed it", self.lease and self.lease.address or "?")
      -- Kept: the address, for udhcpc to ask for again (-r).
      local l = self.lease
      local ip, mask = (l and l.address or ""):match("^([^/]*)/?(%d*)$")
      core.fs.write(ndmz.lease4_file(cfg), string.format("event=lost\nip=%s\nmask=%s\nat=%d\n", ip or "",
        mask or "", os.time()), tonumber("600", 8))
      self.lease = nil
      self:kick()
    else
      self.dhcp_state = self.dhcp_state == "lost" and "lost" or "discovering"
    end
  elseif event == "leasefail" then
    if self.dhcp_state ~= "no server" then self:log("no DHCP server answers; udhcpc keeps asking") end
    self.dhcp_state = "no server"
  elseif event == "nak" then
    self:log("the DHCP server refused the lease (NAK); asking for a new one")
    self.dhcp_state = "discovering"
  end
end

-- ---- router advertisements ----

-- rdisc6's report, parsed: { router, router_lifetime, mtu, prefixes }.
local function parse_rdisc6(text)
  local ra = { prefixes = {} }
  local prefix
  local function seconds(v)
    if v == "infinite" then return 4294967295 end
    return tonumber(v)
  end
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^%s*(.-)%s*:%s*(%S+)")
    if line:match("^%s*from ") then
      ra.router = line:match("from%s+(%S+)")
    elseif k == "Router lifetime" then
      ra.router_lifetime = seconds(v)
    elseif k == "Prefix" then
      prefix = { prefix = v, autonomous = false }
      ra.prefixes[#ra.prefixes + 1] = prefix
    elseif k == "Autonomous address conf." and prefix then
      prefix.autonomous = v == "Yes"
    elseif k == "Valid time" and prefix then
      prefix.valid = seconds(v)
    elseif k == "Pref. time" and prefix then
      prefix.preferred = seconds(v)
    elseif k == "MTU" then
      ra.mtu = tonumber(v)
    end
  end
  if not ra.router then return nil end
  return ra
end
dhcp.parse_rdisc6 = parse_rdisc6

function C:solicit()
  if self.rdisc6 or self.stopping then return end
  local out = uv.new_pipe(false)
  local buf = {}
  local handle, pid
  handle, pid = uv.spawn("ip", {
    args = { "netns", "exec", names.NDMZ, "rdisc6", "-1", "-n", "-r", "2", "-w", "1000", names.UPLINK },
    stdio = { nil, out, nil }, env = { "PATH=" .. PATH },
  }, function()
    if not out:is_closing() then out:close() end
    if handle and not handle:is_closing() then handle:close() end
    self.rdisc6 = nil
    self:ra_answer(table.concat(buf))
  end)
  if not handle then
    out:close()
    self:log("cannot run rdisc6: %s", tostring(pid))
    self.ra_next = now() + RA_MAX
    return
  end
  self.rdisc6 = handle
  out:read_start(function(e, data) if not e and data then buf[#buf + 1] = data end end)
end

-- The set of what an RA gives (to tell a change).
local function ra_key(ra)
  if not ra then return "" end
  local parts = { tostring(ra.router), tostring(ra.mtu) }
  for _, p in ipairs(ra.prefixes) do parts[#parts + 1] = p.prefix end
  table.sort(parts)
  return table.concat(parts, " ")
end

function C:ra_answer(text)
  local cfg = self.d.cfg
  local ra = parse_rdisc6(text)
  if not ra then
    if self.ra_state ~= "no router" and self.ra_state ~= "lost" then
      self:log("no router answers a solicitation%s", self.ra and "; the prefix stays until its lifetime ends" or "")
    end
    if self.ra_state ~= "lost" then self.ra_state = "no router" end
    self.ra_next = now() + RA_RETRY
    return
  end
  ra.at = os.time()
  local shortest = ra.router_lifetime ~= 0 and ra.router_lifetime or nil
  for _, p in ipairs(ra.prefixes) do
    if p.valid and p.valid > 0 then shortest = shortest and math.min(shortest, p.valid) or p.valid end
  end
  self.ra_next = now() + math.max(RA_MIN, math.min(RA_MAX, (shortest or 90) / 3))
  local ok, err = core.fs.write(ndmz.ra6_file(cfg), json.encode(ra), tonumber("600", 8))
  if not ok then self:log("cannot write %s: %s", ndmz.ra6_file(cfg), tostring(err)) return end
  local learnt = ndmz.ra6(cfg)
  self.ra_state = learnt and "ok" or "no prefix"
  self.ra_answered = now()
  if ra_key(ra) ~= self.ra_key then
    self.ra_key = ra_key(ra)
    local list = {}
    for _, p in ipairs(ra.prefixes) do list[#list + 1] = p.prefix end
    self:log("router advertisement from %s: prefix %s, router lifetime %s s%s", ra.router,
      #list > 0 and table.concat(list, ", ") or "none", tostring(ra.router_lifetime),
      ra.mtu and (", MTU " .. ra.mtu) or "")
    self:kick()
  end
  self.ra = learnt
end

-- ---- the watch ----

local function uplink_addresses()
  local out = {}
  for _, a in ipairs(core.addr.dump(names.NDMZ, names.UPLINK) or {}) do
    if a.scope == "global" then out[#out + 1] = a.addr end
  end
  table.sort(out)
  return out
end

function C:tick()
  if self.stopping then return end
  local t = now()
  local link = core.netns.exists(names.NDMZ) and core.link.get(names.NDMZ, names.UPLINK)
  if not link then
    self.carrier = nil
  else
    local carrier = link.carrier and link.up
    if self.carrier == false and carrier then
      self:log("carrier back: %s", self.client and "renewing the lease, soliciting routers" or "soliciting routers")
      if self.client and self.client.pid then uv.kill(self.client.pid, "sigusr1") end
      self.ra_next = t
    elseif self.carrier and not carrier then
      self:log("carrier lost (the addresses stay until their leases end)")
    end
    self.carrier = carrier
    self.mtu = link.mtu
    local cfg = self.d.cfg
    if cfg.uplink.dhcp and not self.client and t >= (self.restart_at or 0) then self:start_udhcpc() end
    if cfg.uplink.ra and t >= (self.ra_next or 0) then self:solicit() end
    -- What the clients learnt ends: the address goes now.
    local lease = cfg.uplink.dhcp and self.lease
    if lease and os.time() >= lease.expires then
      self:log("DHCP lease %s expired", lease.address)
      self.lease, self.dhcp_state = nil, "lost"
      self:kick()
    end
    local ra = cfg.uplink.ra and self.ra
    if ra then
      local now_s, soonest = os.time(), ra.router_expires
      for _, p in ipairs(ra.prefixes) do soonest = soonest and math.min(soonest, p.expires) or p.expires end
      if soonest and now_s >= soonest then
        self:log("router advertisement lifetime over: %s", ra_key(ndmz.ra6(cfg)) == "" and "IPv6 uplink gone"
          or "what remains stays")
        self.ra = ndmz.ra6(cfg)
        if not self.ra then self.ra_state = "lost" end
        self:kick()
      end
    end
    local addrs = uplink_addresses()
    local text = table.concat(addrs, " ")
    if self.addresses ~= nil and text ~= self.addresses then
      self:address_changed(self.addresses, text)
    end
    self.addresses = text
  end
  local d = self.d
  if self.want_apply then self:apply() end
  if self.want_converge and not self.applying and not d.converging and not d.stopping then
    self.want_converge = false
    d:converge()
  end
end

function C:address_changed(before, after)
  local change = { at = os.time(), from = before == "" and json.array() or json.array(self.split(before)),
    to = after == "" and json.array() or json.array(self.split(after)) }
  table.insert(self.changes, 1, change)
  while #self.changes > 5 do table.remove(self.changes) end
  self:log("address changed: %s → %s; the node's facts changed: re-add them to every network "
    .. "(zmesh net add-node FILE FACTS --update), render and apply", before == "" and "none" or before,
    after == "" and "none" or after)
  local control = self.d.control
  -- Written now; the control plane's next status round would find the
  -- change too.
  if control and control.publish_facts then
    pcall(control.publish_facts, control)
  end
end

function C.split(text)
  local out = {}
  for w in text:gmatch("%S+") do out[#out + 1] = w end
  return out
end

-- ---- status, stop ----

function C:status()
  local t, s = os.time(), {}
  local u = self.d.cfg.uplink
  s.carrier = self.carrier
  s.mtu = self.mtu
  s.addresses = json.array(self.addresses and self.split(self.addresses) or {})
  if u.dhcp then
    local l = self.lease
    s.dhcp = { client = "udhcpc", pid = self.client and self.client.pid or json.null,
      state = self.dhcp_state, address = l and l.address, router = l and l.router, server = l and l.serverid,
      lease = l and l.seconds, expires_in = l and (l.expires - t), mtu = l and l.mtu,
      renewals = self.renewals, restarts = self.restarts, last_event = self.dhcp_event_name,
      last_event_ago = self.dhcp_event_at and (now() - self.dhcp_event_at) }
  end
  if u.ra then
    local ra = self.ra
    local prefixes = {}
    for _, p in ipairs(ra and ra.prefixes or {}) do
      prefixes[#prefixes + 1] = { prefix = p.prefix, expires_in = p.expires - t }
    end
    s.ra = { client = "rdisc6", state = self.ra_state, router = ra and ra.router,
      router_expires_in = ra and ra.router_expires and (ra.router_expires - t), mtu = ra and ra.mtu,
      prefixes = json.array(prefixes), addresses = json.array(ra and ra.addresses or {}),
      last_answer_ago = self.ra_answered and (now() - self.ra_answered) }
  end
  local changes = {}
  for i, c in ipairs(self.changes) do
    changes[i] = { seconds_ago = t - c.at, from = c.from, to = c.to }
  end
  s.changes = json.array(changes)
  if #changes > 0 then
    s.facts_changed = "the uplink's addresses changed: re-add this node's facts to its networks "
      .. "(zmesh net add-node FILE FACTS --update), render and apply"
  end
  return s
end

function C:stop()
  if self.stopping then return end
  self.stopping = true
  self.timer:stop()
  -- Without -R, udhcpc ends without releasing: the address stays, and the
  -- next daemon's udhcpc asks for it again.
  if self.client and self.client.pid then uv.kill(self.client.pid, "sigterm") end
end

-- Start supervising the uplink's clients of daemon D; nil when its
-- uplink uses neither DHCP nor router advertisements.
function dhcp.start(d)
  local u = d.cfg.uplink
  if not (u.dhcp or u.ra) then return nil end
  local self = setmetatable({ d = d, dir = ndmz.lease_dir(d.cfg), restart_delay = RESTART_MIN,
    restarts = 0, renewals = 0, changes = {}, dhcp_state = u.dhcp and "starting" or nil,
    ra_state = u.ra and "starting" or nil }, C)
  assert(core.fs.mkdir(self.dir, tonumber("700", 8)))
  self.script, self.pidfile = self.dir .. "/udhcpc.script", self.dir .. "/udhcpc.pid"
  local ok, err = core.fs.write(self.script, SCRIPT, tonumber("700", 8))
  if not ok then error("cannot write " .. self.script .. ": " .. tostring(err), 0) end
  end_stale(self.pidfile)
  self.lease = u.dhcp and ndmz.lease4(d.cfg) or nil
  self.ra = u.ra and ndmz.ra6(d.cfg) or nil
  self.timer = uv.new_timer()
  self.timer:start(200, 1000, function()
    local okt, e = pcall(self.tick, self)
    if not okt then d:log("uplink: %s", tostring(e)) end
  end)
  for _, sig in ipairs({ "sigterm", "sigint" }) do
    local s = uv.new_signal()
    s:start(sig, function() self:stop() end)
    uv.unref(s)
  end
  d:log("uplink: %s%s%s supervised", u.dhcp and "DHCP" or "", (u.dhcp and u.ra) and " and " or "",
    u.ra and "router advertisements" or "")
  return self
end

return dhcp
