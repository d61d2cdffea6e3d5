-- Policy "subnet": which /24 (and IPv6 /64) a new NR, or the network's
-- block of external-access addresses, gets.
--
-- Contract (checked by zmesh.net.policies; a breach names this file and line):
--
--   subnet(req) → { subnet = "a.b.c.0/24", ipv6_subnet = "…/64" } or nil, reason
--     req (read-only): {
--       node_id = "n3" (or "access" for the external-access block),
--       ip_range = "10.1.0.0/16", ipv6_range = "fd00:1::/48" (or nil),
--       routed_ipv6 = "2001:db8:100::/48" (or nil): the network's routed
--                prefix, of which the NR gets a /64 too,
--       subnet = "10.1.7.0/24" (or nil): the /24 the user fixed; answer it
--                as it is, and pick the /64 only,
--       used = { ["10.1.1.0/24"] = true, … },       -- every /24 in use
--       used_ipv6 = { ["fd00:1:0:1::/64"] = true, … },
--       used_routed = { ["2001:db8:100:1::/64"] = true, … },
--       usable = function(cidr) → boolean,  -- false for /24s whose wg mesh
--                                           -- address 100.64.b.c is unusable
--     }
--     ipv6_subnet is required exactly when req.ipv6_range is set, and
--     routed_ipv6_subnet exactly when req.routed_ipv6 is. The
--     answer must lie in the range and not be in use; the caller checks.
--     It is asked once per NR, when the node is added: the answer is stored
--     in the network file, so re-renders never move an NR.
--
-- Default: the lowest free /24 from x.x.1.0 upwards (x.x.0.0/24 last, as
-- .0 subnets read like mistakes), and the /64 with the same index in the
-- IPv6 range (and in the routed prefix) when free, else the lowest free
-- /64.
local ip = require "zmesh.ip"

local function pick_v4(range, req)
  local n = ip.subnet_count(range, 24)
  for k = 1, n do
    local i = k % n -- 1, 2, …, n-1, then 0
    local cidr = ip.format_cidr(ip.subnet(range, 24, i))
    if not req.used[cidr] and req.usable(cidr) then return cidr, i end
  end
  return nil
end

local function pick_v6(range6, used, index)
  local preferred = ip.subnet(range6, 64, index)
  if preferred and not used[ip.format_cidr(preferred)] then
    return ip.format_cidr(preferred)
  end
  -- /64s of a /48 are 65536; a network never has that many NRs, so the
  -- scan ends early.
  local n = ip.subnet_count(range6, 64)
  for i = 0, n - 1 do
    local cidr = ip.format_cidr(ip.subnet(range6, 64, i))
    if not used[cidr] then return cidr end
  end
  return nil
end

local function subnet(req)
  local range = ip.parse_cidr(req.ip_range)
  local v4, index
  if req.subnet then
    v4, index = req.subnet, ip.subnet_index(range, ip.parse_cidr(req.subnet))
  else
    v4, index = pick_v4(range, req)
  end
  if not v4 then return nil, "ip_range " .. req.ip_range .. " has no free /24 left" end
  local out = { subnet = v4 }
  if req.ipv6_range then
    out.ipv6_subnet = pick_v6(ip.parse_cidr(req.ipv6_range), req.used_ipv6, index)
    if not out.ipv6_subnet then
      return nil, "ipv6_range " .. req.ipv6_range .. " has no free /64 left"
    end
  end
  if req.routed_ipv6 then
    out.routed_ipv6_subnet = pick_v6(ip.parse_cidr(req.routed_ipv6), req.used_routed, index)
    if not out.routed_ipv6_subnet then
      return nil, "routed_ipv6 " .. req.routed_ipv6 .. " has no free /64 left"
    end
  end
  return out
end

return { name = "subnet", version = 1, subnet = subnet }
