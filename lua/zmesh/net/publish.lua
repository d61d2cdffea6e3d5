-- `zmesh net publish`: the network's rendered NR configs into the
-- fleet's bucket (zmesh.control.kv), each at nr.<node_id>.<net_id>, with
-- the network's new generation in it; the keys of nodes that left get a
-- delete marker (their daemons remove the NR).
--
-- Generations and compare-and-set. The network key net.<net_id> holds
-- {generation, nodes, state}. A publish reads it, and refuses when the
-- network file was last published at another generation than the
-- bucket's (someone else published since: the file is stale; --force
-- publishes over it). It then claims the next generation with a
-- compare-and-set on the network key's revision: of two publishes that
-- start from the same generation exactly one wins the claim, and the
-- other stops with a conflict before writing anything. Every nr key is
-- written with a compare-and-set too, and carries its generation in a
-- header (Zmesh-Generation), and its claim (Zmesh-Claim): a publish that
-- finds a newer generation on a key, or its own generation under a claim
-- that is not the network key's last, stops as superseded and never
-- overwrites it. Last, the network key is marked published (again a
-- compare-and-set on the claim's revision), every key is read back and
-- what a loser's write took at the same moment is put back (see repair),
-- so the keys never mix two publishes' configs once the newest one is
-- done; the network file records the generation
-- ({"published": {"generation": N}}).
local json = require "zmesh.json"
local kv = require "zmesh.control.kv"
local fleet = require "zmesh.control.fleet"
local net = require "zmesh.net"

local publish = {}

local GEN = "Zmesh-Generation"
local CLAIM = "Zmesh-Claim"

local function conflict(fmt, ...)
  error("conflict: " .. string.format(fmt, ...), 0)
end

local function must(v, err, kind)
  if v == nil then error((kind == "unavailable" and "NATS: " or "") .. tostring(err), 0) end
  return v
end

local retrying = kv.retrying

local function gen_of(e)
  return e and e.headers and math.tointeger(tonumber(e.headers[GEN])) or nil
end

-- Write KEY = DATA (nil: a delete marker) at generation GEN over the
-- entry E seen before (false: none). A conflict means someone wrote the
-- key since: look again (a newer generation stops this publish); a
-- timeout may hide a write that landed: a key at GEN with our claim is
-- ours. A key at GEN with another claim means two publishes hold one
-- generation: in a cluster, nats-server before 2.9.21 may accept two
-- compare-and-sets made at the same moment (nats-server issue 4320).
-- The claim the network key holds last stands: that publish writes over
-- the other's keys, the other stops.
local function write(cl, bucket, key, data, gen, e, opts)
  for _ = 1, 20 do
    local g = gen_of(e)
    if g and g > gen then
      conflict("superseded: %s holds generation %d, newer than this publish's %d (another publish won)", key, g, gen)
    end
    local theirs = g == gen and e.headers[CLAIM] and e.headers[CLAIM] ~= opts.token
    if theirs then
      local now = kv.decode(must(retrying(opts.deadline, kv.get, cl, bucket, opts.netkey, { timeout = opts.timeout })))
      if not now or now.claim ~= opts.token then
        conflict("superseded: %s holds generation %d of another publish, whose claim stands", key, g)
      end
    elseif g == gen and (data ~= nil) == (e.op == "put") then
      return e.revision
    end
    local rev, err, kind
    local headers = { [GEN] = tostring(gen), [CLAIM] = opts.token }
    if data then
      rev, err, kind = kv.put(cl, bucket, key, data, { expect = e and e.revision or 0,
        headers = headers, timeout = opts.timeout })
    else
      rev, err, kind = kv.delete(cl, bucket, key, { expect = e and e.revision or 0,
        headers = headers, timeout = opts.timeout })
    end
    if rev then return rev end
    if kind ~= "conflict" and (kind ~= "unavailable" or kv.now() >= opts.deadline) then
      must(nil, key .. ": " .. tostring(err), kind)
    end
    e = must(retrying(opts.deadline, kv.get, cl, bucket, key, { timeout = opts.timeout }))
  end
  conflict("%s keeps changing under this publish", key)
end

-- Put the network key (compare-and-set on EXPECT) with document DOC of
-- claim TOKEN; a timeout may hide a write that landed: ours if it holds
-- TOKEN and STATE. Returns the revision, or nil and the entry found.
local function put_net(cl, bucket, netkey, doc, expect, token, state, opts)
  while true do
    local rev, err, kind = kv.put(cl, bucket, netkey, doc, { expect = expect, timeout = opts.timeout })
    if rev then return rev end
    if kind ~= "conflict" and (kind ~= "unavailable" or kv.now() >= opts.deadline) then
      must(nil, netkey .. ": " .. tostring(err), kind)
    end
    local e = must(retrying(opts.deadline, kv.get, cl, bucket, netkey, { timeout = opts.timeout }))
    local v = kv.decode(e)
    if v and v.claim == token and v.state == state then return e.revision end
    if kind == "conflict" or (e and e.revision or 0) ~= expect then return nil, v end
  end
end

-- After the commit: every key holds this publish's claim, or is put
-- back. With nats-server issue 4320 the losing publish's compare-and-set
-- on a key can be taken too when it is made at the same moment as ours
-- (both expected the same revision): the loser then stops at its next
-- step, but its one write stands. Such a write lands while we are still
-- writing; once committed, this reads every key and writes its own over
-- what is not. A later write of the loser is a plain conflict for it (it
-- then finds our committed claim, and stops).
local REPAIR_ROUNDS = 3

local function repair(cl, bucket, n, configs, gen, opts)
  for _ = 1, REPAIR_ROUNDS do
    local now = must(retrying(opts.deadline, kv.snapshot, cl, bucket, "nr.*." .. n.net_id,
      { headers_only = true, timeout = opts.timeout }))
    local wrong = 0
    for key, e in pairs(now) do
      local id = key:match("^nr%.([^.]+)%.")
      local g = gen_of(e)
      local ours = g == gen and e.headers[CLAIM] == opts.token
      local want_put = id and configs[id] ~= nil
      -- (A newer generation is a later publish's: it owns the key now.)
      local newer = g and g > gen
      if id and not newer and not (ours and (e.op == "put") == want_put) and (want_put or e.op == "put") then
        wrong = wrong + 1
        local ok, err = pcall(write, cl, bucket, key, want_put and json.encode(configs[id]) or nil, gen, e, opts)
        -- A conflict now: a newer publish claimed the network after our
        -- commit, and writes every key itself.
        if not ok and tostring(err):find("^conflict: ") then return end
        if not ok then error(err, 0) end
      end
    end
    if wrong == 0 then return end
  end
end

-- Publish network file P.file. P: the NATS parameters (zmesh.control.fleet),
-- force, replicas, policy_dir. Returns what was done.
function publish.run(p)
  local n = net.load(p.file)
  local configs = net.render_all(n, { policy_dir = p.policy_dir })
  local cl, bucket = fleet.connect(p)
  -- Once the claim is ours the file records it, also when the rest
  -- fails: publishing again from it then goes on over our own claim.
  local base = type(n.published) == "table" and n.published.generation or nil
  local before, intended = n.published, false
  local hooks = {
    -- Before the claim: a claim whose answer is lost (a timeout) is
    -- still known as ours by its token.
    intent = function(token)
      n.published, intended = { generation = base, claim = token }, true
      net.save(n, p.file)
    end,
    claimed = function(gen, token)
      n.published = { generation = gen, claim = token, complete = false }
      net.save(n, p.file)
    end,
  }
  local ok, res = pcall(publish.to_bucket, cl, bucket, n, configs, p, hooks)
  cl:close()
  if not ok then
    -- Another publish won (the claim, or the keys after two claims the
    -- server both took): nothing of ours stands, so the file is left as
    -- it was and stays behind the bucket. A lost answer (a timeout) keeps
    -- the token, to go on from.
    if intended and tostring(res):match("^conflict: ") then
      n.published = before
      pcall(net.save, n, p.file)
    end
    error(res, 0)
  end
  n.published = { generation = res.generation }
  net.save(n, p.file)
  return res
end

function publish.to_bucket(cl, bucket, n, configs, p, hooks)
  hooks = hooks or {}
  local opts = { timeout = cl.timeout, deadline = kv.now() + cl.patience }
  local info, made, kind0 = retrying(opts.deadline, kv.ensure_bucket, cl, bucket,
    { replicas = p.replicas, timeout = cl.timeout })
  if not info then must(nil, "bucket " .. bucket .. ": " .. tostring(made), kind0) end
  local netkey = kv.net_key(n.net_id)
  local cur = must(retrying(opts.deadline, kv.get, cl, bucket, netkey, opts))
  local curv = kv.decode(cur)
  local cur_gen = curv and math.tointeger(curv.generation) or nil
  local rec = type(n.published) == "table" and n.published or {}
  local base = math.tointeger(rec.generation)
  -- Our own claim, whose publish did not finish: go on from it.
  if curv and rec.claim and curv.claim == rec.claim then base = cur_gen end
  if cur_gen and base ~= cur_gen and not p.force then
    conflict("network %s is at generation %d in bucket %s (%s), but %s was %s: someone else published since; "
      .. "take their changes into the file (or publish with --force)", n.name, cur_gen, bucket,
      tostring(curv.state or "?"), p.file or "the file",
      base and ("published at generation " .. base) or "never published")
  end
  local gen = math.max(cur_gen or 0, base or 0) + 1
  local ids = {}
  for _, node in ipairs(n.nodes) do ids[#ids + 1] = node.node_id end
  local token = kv.random_token()
  local function netdoc(state)
    return json.encode({ net_id = n.net_id, name = n.name, generation = gen, state = state,
      nodes = json.array(ids), at = os.time(), claim = token })
  end
  if hooks.intent then hooks.intent(token) end
  -- The claim: one of two publishes from the same generation wins here.
  local claim, now = put_net(cl, bucket, netkey, netdoc("publishing"), cur and cur.revision or 0, token,
    "publishing", opts)
  if not claim then
    conflict("another publish of network %s won: the bucket now holds generation %s; nothing of this "
      .. "publish was written", n.name, now and tostring(now.generation) or "?")
  end
  if hooks.claimed then hooks.claimed(gen, token) end
  opts.token, opts.netkey = token, netkey
  -- Every nr key of this network as it is now (revisions, generations).
  local existing = must(retrying(opts.deadline, kv.snapshot, cl, bucket, "nr.*." .. n.net_id,
    { headers_only = true, timeout = opts.timeout }))
  local written, deleted = 0, 0
  for _, id in ipairs(ids) do
    local cfg = configs[id]
    cfg.generation = gen
    local key = kv.nr_key(id, n.net_id)
    write(cl, bucket, key, json.encode(cfg), gen, existing[key] or false, opts)
    written = written + 1
  end
  local leaving = {}
  for key, e in pairs(existing) do
    local id = key:match("^nr%.([^.]+)%.")
    if id and not configs[id] and e.op == "put" then leaving[#leaving + 1] = { key = key, e = e, id = id } end
  end
  table.sort(leaving, function(a, b) return a.key < b.key end)
  local left = {}
  for _, l in ipairs(leaving) do
    write(cl, bucket, l.key, nil, gen, l.e, opts)
    deleted = deleted + 1
    left[#left + 1] = l.id
  end
  -- Done: unless a newer publish claimed the network meanwhile.
  local fin = put_net(cl, bucket, netkey, netdoc("published"), claim, token, "published", opts)
  if not fin then
    conflict("superseded: another publish of network %s claimed a newer generation while this one (%d) "
      .. "was writing; its configs stand", n.name, gen)
  end
  repair(cl, bucket, n, configs, gen, opts)
  return { network = n.name, net_id = n.net_id, bucket = bucket, generation = gen, written = written,
    deleted = deleted, removed_nodes = json.array(left), bucket_made = made or false,
    replicas = info.replicas, revision = fin }
end

return publish
