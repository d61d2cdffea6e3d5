-- Policy "role": is a node public or hidden, and which address does one
-- node dial to reach another?
--
-- Contract (checked by zmesh.net.policies; a breach names this file and line):
--
--   role(node) → "public" | "hidden"
--     node: the node's facts, read-only: { node_id, public_key,
--       addresses = { "203.0.113.11/24", … }, listen_ports = { min, max },
--       force_role = "public"|"hidden" (optional),
--       public_endpoints = { "203.0.113.11", … } (optional) }.
--     A public node's NR accepts connections and can be an aggregator; a
--     hidden one (behind NAT) only dials out.
--
--   endpoint(from, to) → address (IPv4 or IPv6 text, no port) or nil
--     The address FROM dials to reach TO, a node this policy called public.
--     FROM has the same shape as above; its addresses may be empty when it
--     is not a node (an external device such as a laptop), which means
--     "unknown: any family". nil means FROM cannot reach TO.
--
-- Default: a farmer's force_role wins; otherwise a node is public when it
-- has public_endpoints or a global unicast address. Documentation ranges
-- (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) count as
-- global because test networks simulate the Internet with them and a real
-- fleet never carries them. RFC 1918, CGNAT, ULA and link-local mean hidden.
-- A peer uses IPv6 only when both ends have it, else IPv4.
local ip = require "zmesh.ip"

local public_class = { global = true, documentation = true }
-- Never worth dialling, even on a node forced public.
local unusable_class = { ["link-local"] = true, loopback = true, multicast = true,
  unspecified = true, reserved = true }

-- Parsing is cached per facts table: endpoint() runs for every pair of
-- public NRs, and the facts do not change during one render.
local parsed = setmetatable({}, { __mode = "k" })

-- NODE's addresses as { addr, class } pairs, in the order given.
local function classified(node)
  local hit = parsed[node]
  if hit then return hit end
  local out = {}
  for _, cidr in ipairs(node.addresses or {}) do
    local a = ip.parsed(cidr)
    if a then out[#out + 1] = { addr = a, class = ip.classify(a) } end
  end
  parsed[node] = out
  return out
end

local function is_public_class(class) return public_class[class] == true end
local function is_usable_class(class) return not unusable_class[class] end

-- The first address of NODE of FAMILY whose class passes KEEP.
local function first(node, family, keep)
  for _, c in ipairs(classified(node)) do
    if c.addr.family == family and keep(c.class) then return c.addr end
  end
  return nil
end

-- Where others dial NODE: its first IPv4 and first IPv6 address as text
-- (either may be nil), and whether that IPv6 one is global. The farmer's
-- override first, else its public addresses, else (only when forced
-- public, e.g. a fleet on one LAN) any usable address.
local targets = setmetatable({}, { __mode = "k" })
local function dial(node)
  local hit = targets[node]
  if hit then return hit[4], hit[6], hit.global6 end
  local t = {}
  if node.public_endpoints and #node.public_endpoints > 0 then
    for _, s in ipairs(node.public_endpoints) do
      local a = ip.parsed(s)
      if a and not t[a.family] then t[a.family] = a end
    end
  else
    local keep = is_public_class
    if node.force_role == "public" and not first(node, 4, keep) and not first(node, 6, keep) then
      keep = is_usable_class
    end
    t[4], t[6] = first(node, 4, keep), first(node, 6, keep)
  end
  t.global6 = t[6] ~= nil and is_public_class(ip.classify(t[6]))
  t[4] = t[4] and ip.format_addr(t[4])
  t[6] = t[6] and ip.format_addr(t[6])
  targets[node] = t
  return t[4], t[6], t.global6
end

local function role(node)
  if node.force_role then return node.force_role end
  if node.public_endpoints and #node.public_endpoints > 0 then return "public" end
  if first(node, 4, is_public_class) or first(node, 6, is_public_class) then return "public" end
  return "hidden"
end

-- What NODE can dial from: whether it has any address (none: unknown,
-- any family), a public or a usable IPv6 address, a usable IPv4 one.
-- Cached like the parsing: endpoint() asks it for every pair.
local sources = setmetatable({}, { __mode = "k" })
local function source(node)
  local s = sources[node]
  if s then return s end
  s = {
    none = #(node.addresses or {}) == 0,
    public6 = first(node, 6, is_public_class) ~= nil,
    usable6 = first(node, 6, is_usable_class) ~= nil,
    usable4 = first(node, 4, is_usable_class) ~= nil,
  }
  sources[node] = s
  return s
end

local function endpoint(from, to)
  local v4, v6, global6 = dial(to)
  local s = source(from)
  if s.none then return v4 or v6 end
  -- A global IPv6 target needs a global IPv6 source; any IPv4 source
  -- reaches any IPv4 target (NAT carries it out).
  if v6 and (global6 and s.public6 or not global6 and s.usable6) then return v6 end
  if v4 and s.usable4 then return v4 end
  return nil
end

return { name = "role", version = 1, role = role, endpoint = endpoint }
