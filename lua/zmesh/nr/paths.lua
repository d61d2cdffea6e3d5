-- Which peer carries what, given what this node knows of the mesh now:
-- the AllowedIPs of every peer of an NR, computed from the failover facts
-- the network tool rendered into its config (every candidate aggregator
-- and exit, in order; what each node owns) and the daemon's current
-- choice (which aggregators and exits answer its probes; which
-- aggregator each hidden NR says it routes through). Pure: no kernel.
--
-- With no failover facts in the config, or nothing known yet, the answer
-- is the rendered one: every hidden NR through its first aggregator, the
-- network through its first exit.
--
-- CHOICE = {
--   alive    = { [id] = false, … }  a node whose probes go unanswered
--                                   (absent or true: it counts as up);
--   upstream = "p1"                 a hidden NR's aggregator in use;
--   exit     = "p2" | false         the exit in use (false: none answers);
--   via      = { [hidden id] = "p2" } what hidden NRs say they route
--                                   through (an aggregator hears it);
--   served   = { [aggregator] = { [hidden id] = true } } hidden NRs an
--                                   aggregator says route through it
--                                   although another candidate before it
--                                   answers (a hidden NR cut off from its
--                                   primary alone), or that came to it
--                                   lately (a failover or a fail back in
--                                   progress): go there directly — relayed
--                                   through another aggregator, the
--                                   packets would come from a source the
--                                   last aggregator does not accept
-- }
local paths = {}

local DEFAULTS = { "0.0.0.0/0", "::/0" }

local function first_up(list, alive, except)
  for _, id in ipairs(list or {}) do
    if id ~= except and alive[id] ~= false then return id end
  end
end

local function member(list, id)
  for _, x in ipairs(list or {}) do if x == id then return true end end
  return false
end

-- The exit in use: the choice (while it is still a candidate: a new
-- config may have changed them), else the first candidate that answers.
function paths.exit(f, choice)
  if not f.exits or #f.exits == 0 then return nil end
  if choice.exit ~= nil and member(f.exits, choice.exit) then return choice.exit end
  return first_up(f.exits, choice.alive or {}) or f.exits[1]
end

-- A hidden NR's aggregator in use: the choice (while still a candidate),
-- else the first that answers.
function paths.upstream(f, choice)
  if choice.upstream and member(f.aggregators, choice.upstream) then return choice.upstream end
  return first_up(f.aggregators, choice.alive or {}) or f.aggregators[1]
end

-- A choice as the daemon stores it (JSON: lists for sets) → as paths
-- takes it.
function paths.from_stored(c)
  if type(c) ~= "table" then return {} end
  local served = {}
  for a, list in pairs(c.served or {}) do
    local set = {}
    for _, h in ipairs(list) do set[h] = true end
    served[a] = set
  end
  return { alive = c.alive, upstream = c.upstream, exit = c.exit, via = c.via, served = served }
end

-- The peer through which public NR ME sends to hidden NR (or device) H.
-- An aggregator of H goes straight to H when H routes through it (H says
-- so, or says nothing and it is H's first candidate that answers); else
-- through the aggregator H says it uses, or the next one that answers.
-- A public NR that does not serve H sends to H's first candidate that
-- answers: that one forwards it if H routes elsewhere.
function paths.hidden_hop(f, choice, me, h)
  local alive, via, served = choice.alive or {}, choice.via or {}, choice.served or {}
  local cands = f.nodes[h].aggregators
  local serves = false
  for _, a in ipairs(cands) do if a == me then serves = true end end
  if serves then
    local said = via[h]
    if alive[h] ~= false and (said == me or (said == nil and first_up(cands, alive) == me)) then
      return h
    end
    if said and said ~= me and alive[said] ~= false then return said end
  end
  for _, a in ipairs(cands) do
    if a ~= me and alive[a] ~= false and served[a] and served[a][h] then return a end
  end
  if serves then return first_up(cands, alive, me) or h end
  return first_up(cands, alive) or cands[1]
end

-- The hidden NRs ME (an aggregator) says it serves out of order: those
-- that route through it although a candidate before it answers ME.
function paths.served_out_of_order(f, choice, me)
  local alive, via, out = choice.alive or {}, choice.via or {}, {}
  for _, h in ipairs(f.hidden or {}) do
    local n = f.nodes[h]
    if via[h] == me and alive[h] ~= false and first_up(n.aggregators, alive) ~= me then
      out[#out + 1] = h
    end
  end
  return out
end

local function add(lists, id, prefixes, skip)
  local l = lists[id]
  if not l then return end
  for _, p in ipairs(prefixes) do if p ~= skip then l[#l + 1] = p end end
end

local function copy_peer(p, allowed, keepalive)
  return { node_id = p.node_id, subnet = p.subnet, public_key = p.public_key,
    endpoint = p.endpoint, persistent_keepalive = keepalive, allowed_ips = allowed }
end

-- CFG (a validated NR config) as CHOICE makes it: a copy with the peers'
-- AllowedIPs and keepalives, `exit` and `exit_for_network` decided.
function paths.resolve(cfg, choice)
  local f = cfg.failover
  if not f then return cfg end
  choice = choice or {}
  local me = cfg.node_id
  local alive = choice.alive or {}
  local exit = paths.exit(f, choice)
  local out = setmetatable({}, { __index = cfg })
  out.exit = (exit and exit ~= me) and "mesh" or "local"
  out.exit_for_network = exit == me
  local lists, peers = {}, {}
  for _, p in ipairs(cfg.peers) do lists[p.node_id] = {} end
  if f.role == "hidden" then
    local up = paths.upstream(f, choice)
    -- Warm: the aggregator in use and the next that answers; the others
    -- cold (no keepalive) until one of those two fails.
    local warm = first_up(f.aggregators, alive, up)
    for _, p in ipairs(cfg.peers) do
      local n = f.nodes[p.node_id]
      if p.node_id == up then
        add(lists, up, (exit and exit ~= me) and DEFAULTS or f.range)
      elseif n then
        -- A standby carries its mesh address only: probes, no traffic.
        add(lists, p.node_id, { n.mesh .. "/32" })
      end
      local ka = (p.node_id == up or p.node_id == warm) and f.keepalive or nil
      peers[#peers + 1] = copy_peer(p, lists[p.node_id], ka)
    end
    out.peers = peers
    return out
  end
  -- Public: public peers carry what they own; a hidden NR (or device) I
  -- serve keeps its mesh address on its own peer (it is probed there),
  -- and what else it owns goes to the peer it is reached through.
  for _, p in ipairs(cfg.peers) do
    local n = f.nodes[p.node_id]
    if n and n.aggregators then
      if n.mesh then add(lists, p.node_id, { n.mesh .. "/32" }) end
    elseif n then
      add(lists, p.node_id, n.owned)
    else
      -- A peer the failover facts do not know: as rendered.
      add(lists, p.node_id, p.allowed_ips)
    end
  end
  for _, h in ipairs(f.hidden or {}) do
    local n = f.nodes[h]
    local hop = paths.hidden_hop(f, choice, me, h)
    local kept = lists[h] and n.mesh and (n.mesh .. "/32") or nil
    add(lists, hop, n.owned, kept)
  end
  if exit and exit ~= me then
    local n = f.nodes[exit]
    add(lists, (n and n.aggregators) and paths.hidden_hop(f, choice, me, exit) or exit, DEFAULTS)
  end
  for _, p in ipairs(cfg.peers) do
    peers[#peers + 1] = copy_peer(p, lists[p.node_id], p.persistent_keepalive)
  end
  out.peers = peers
  return out
end

-- What CFG's node probes, and why: {[id] = mesh address} — the
-- aggregators it may route through, the exits it may use. Nothing else:
-- every node probes only what its own decisions need. The hidden NRs an
-- aggregator serves are not probed: their own probes of it, arriving,
-- tell it they reach it (paths.watched).
function paths.targets(cfg)
  local f = cfg.failover
  local out = {}
  if not f then return out end
  local me = cfg.node_id
  local function want(id)
    local n = f.nodes[id]
    if id ~= me and n then out[id] = n.mesh end
  end
  local exit_candidate = false
  for _, e in ipairs(f.exits or {}) do if e == me then exit_candidate = true end end
  if f.role == "hidden" then
    for _, a in ipairs(f.aggregators) do want(a) end
    -- Its aggregator chooses the exit for it, unless it is a candidate.
    if not exit_candidate then return out end
  else
    for _, h in ipairs(f.hidden or {}) do
      for _, a in ipairs(f.nodes[h].aggregators) do want(a) end
    end
  end
  for _, e in ipairs(f.exits or {}) do want(e) end
  return out
end

-- The hidden NRs CFG's node (an aggregator) serves: {[id] = mesh
-- address}, whose liveness it learns from their probes; probed only when
-- they fall silent (a hidden NR whose daemon is down still answers).
function paths.watched(cfg)
  local f = cfg.failover
  local out = {}
  if not f or f.role ~= "public" then return out end
  local me = cfg.node_id
  for _, h in ipairs(f.hidden or {}) do
    local n = f.nodes[h]
    if not n.device then
      for _, a in ipairs(n.aggregators) do
        if a == me then out[h] = n.mesh end
      end
    end
  end
  return out
end

return paths
