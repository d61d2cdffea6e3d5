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
--     }
--     Every hidden id gets at least one aggregator; each a reachable public
--     id, listed once. The first is the primary: it carries all of the
--     hidden NR's traffic. The others are backups: peered, with keepalives
--     so that the NAT mapping and the WireGuard session stay warm, but
--     routing nothing until a re-render makes one of them primary.
--     Hidden NRs that share a primary reach each other in two WireGuard
--     hops (hidden → aggregator → hidden); with different primaries it is
--     three.
--
-- Default: one ordered list for the whole network, by rendezvous hashing
-- of the network id with each public NR's id (highest score first), so
-- that every hidden NR shares the primary. The list depends only on the
-- public NRs at its head: hidden NRs coming and going change nothing, a
-- public NR changes it only by scoring above the current aggregators, and
-- when an aggregator's node leaves, the next one (the warm backup) takes
-- over. A hidden NR that cannot reach one skips to the next.

-- Backups per hidden NR, when there are enough public NRs.
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

local function aggregators(req)
  local order, score = {}, {}
  for i, p in ipairs(req.public) do
    order[i] = p
    score[p] = hash(req.net_id .. "/" .. p)
  end
  table.sort(order, function(a, b)
    if score[a] ~= score[b] then return score[a] > score[b] end
    return a < b
  end)
  local want = math.min(#order, 1 + BACKUPS)
  local out = {}
  for _, h in ipairs(req.hidden) do
    local list = {}
    for _, p in ipairs(order) do
      if req.reachable(h, p) then
        list[#list + 1] = p
        if #list == want then break end
      end
    end
    out[h] = list
  end
  return out
end

return { name = "aggregator", version = 1, aggregators = aggregators }
