-- Names of kernel objects on a node, derived from the network id, never
-- from user text (DESIGN §4). Interface names have at most 15 characters.
local names = {}

names.NDMZ = "ndmz"
names.UPLINK = "public"         -- ndmz uplink, and each NR's uplink veth
names.TONRS = "tonrs"           -- ndmz bridge towards the NRs
names.TONRS_ADDR = "100.127.0.1/16"
names.TONRS_GATEWAY = "100.127.0.1"
names.NR_UPLINK_RANGE = "100.127.0.0/16"
names.CONTAINER_IF = "eth0"

-- A network id: 1..12 of [a-z0-9], so "w-<id>" fits in 15 characters.
function names.valid_net_id(id)
  return type(id) == "string" and id:match("^[a-z0-9]+$") ~= nil and #id <= 12
end

-- Where userspace WireGuard daemons listen (the real `wg` looks there).
names.WG_SOCKET_DIR = "/run/wireguard"

function names.nr_ns(net_id) return "n-" .. net_id end
function names.wg_socket(ifname) return names.WG_SOCKET_DIR .. "/" .. ifname .. ".sock" end
function names.wg_if(net_id) return "w-" .. net_id end
function names.bridge_if(net_id) return "b-" .. net_id end
-- The ndmz end of an NR's uplink veth, named like its namespace.
function names.ndmz_port(net_id) return "n-" .. net_id end

-- FNV-1a, 32 bits: a short stable tag for a container namespace name.
local function fnv1a(s)
  local h = 0x811c9dc5
  for i = 1, #s do
    h = ((h ~ s:byte(i)) * 0x01000193) & 0xffffffff
  end
  return h
end

-- Candidate names for the NR end of a container's veth: a 32-bit hash
-- of the container's namespace name, then of it salted with TRY (1, 2, …)
-- when another container of the NR already has that name. The name in use
-- is recorded with the attachment (zmesh.container), never recomputed.
function names.container_port(container_ns, try)
  if try and try > 0 then container_ns = container_ns .. "#" .. try end
  return string.format("c-%08x", fnv1a(container_ns))
end

return names
