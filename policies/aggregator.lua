-- Policy "aggregator": which public NRs serve each hidden NR, in order.
--
-- Contract (checked by zmesh.net.policies; a breach names this file and line):
--
--   aggregators(req) → { [hidden_id] = { public_id, … }, … }
--     req (read-only): {
--       net_id = "k3v9q2",
--       hidden = { "h1", … },  -- what needs serving, sorted: hidden NRs, and
--                              -- external devices as "access:NAME"
--       public = { "p1", … },  -- candidate aggregators, sorted
--       reachable = function(hidden_id, public_id) → boolean,
--       current = { [id] = { public_id, … }, … },
--                              -- the choice in force: what the network file
--                              -- records (each change to it records every
--                              -- hidden NR's answer), already cut down to
--                              -- candidates the id can still reach, in the
--                              -- recorded order. Ids without a choice
--                              -- (new ones, or a file without the record)
--                              -- are absent; ids not in hidden may be given
--                              -- as context (the hidden NRs a new device
--                              -- joins).
--     }
--     Every hidden id gets at least one aggregator; each a reachable public
--     id, listed once. The first is the primary: it carries all of the
--     hidden NR's traffic. The others are backups, in order: peered, the
--     first one warm (keepalives keep its NAT mapping and WireGuard session
--     up), routing nothing until the primary stops answering the hidden
--     NR's probes; then its daemon moves the traffic to the first backup
--     that answers (policy "failover"), and the next one is warmed.
--     Hidden NRs that share a primary reach each other in two WireGuard
--     hops (hidden → aggregator → hidden); with different primaries it is
--     three.
--
--     Stability: moving a primary costs the hidden NRs behind it lost
--     packets while they re-apply, so a policy keeps the choice in force.
--     An id with a current list gets it back, in its order (cut to as
--     many aggregators as the policy wants). Nodes coming and going then
--     change a list only when one of its aggregators leaves (the next one
--     moves up, so the warm backup becomes primary, and the list is
--     filled up again) or when a list shorter than wanted can be filled
--     up. Not checked: a policy may move NRs on purpose (rebalancing), at
--     that cost.
--
-- Default: one ordered list for the whole network, so that every hidden NR
-- shares the primary. The order is the choice in force (public NRs by how
-- many ids have them as primary, then as backup), then the other public
-- NRs by rendezvous hashing of the network id with each one's id (highest
-- score first, the whole order for a network without a choice yet). Each
-- id keeps its current list and is filled up from the order, skipping
-- public NRs it cannot reach. A new public NR therefore comes after the
-- aggregators in force, however high its score.

-- Backups per hidden NR, when there are enough public NRs. One: it is
-- warm. A policy giving more has the next one warmed when one fails.
local BACKUPS = 1

-- FNV-1a, 32 bits, then a murmur3 finaliser so that similar ids spread.
local function hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff
  end
  h = ((h ~ (h >> 16)) * 0x85ebca6b) & 0xffffffff
  h = ((h ~ (h >> 13)) * 0xc2b2ae35) & 0xffffffff
  return h ~ (h >> 16)
end

-- How many current lists name each public NR as primary and as backup.
local function usage(current, score)
  local primary, backup = {}, {}
  for _, list in pairs(current) do
    for i, p in ipairs(list) do
      if score[p] then
        local count = i == 1 and primary or backup
        count[p] = (count[p] or 0) + 1
      end
    end
  end
  return primary, backup
end

-- PUBLIC in the order: most primary uses first, then most backup uses,
-- then highest score, then by id. Sorted as text, each id behind a
-- fixed-width key (the counts and the score, inverted, in hex), so that
-- the sort compares strings in C: a Lua comparator would run some 5,000
-- times for 600 candidates, under the policy budget's hook.
local function ranked(public, primary, backup, score)
  local keys, id_of = {}, {}
  for i, p in ipairs(public) do
    local k = string.format("%08x%08x%08x", 0xffffffff - (primary[p] or 0), 0xffffffff - (backup[p] or 0),
      0xffffffff - score[p]) .. p
    keys[i], id_of[k] = k, p
  end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = id_of[k] end
  return keys
end

local function aggregators(req)
  local current = req.current or {}
  local score = {}
  for _, p in ipairs(req.public) do score[p] = hash(req.net_id .. "/" .. p) end
  local primary, backup = usage(current, score)
  local order = ranked(req.public, primary, backup, score)
  local want = math.min(#order, 1 + BACKUPS)
  local out = {}
  for _, h in ipairs(req.hidden) do
    local list, taken = {}, {}
    local function take(p)
      if #list < want and score[p] and not taken[p] and req.reachable(h, p) then
        list[#list + 1], taken[p] = p, true
      end
    end
    for _, p in ipairs(current[h] or {}) do take(p) end
    for _, p in ipairs(order) do
      if #list == want then break end
      take(p)
    end
    out[h] = list
  end
  return out
end

return { name = "aggregator", version = 2, aggregators = aggregators }
