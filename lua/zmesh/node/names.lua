-- Names of kernel objects on a node, derived from the network id, never
-- from user text (DESIGN §4). Interface names have at most 15 characters.
local names = {}

names.NDMZ = "ndmz"
names.UPLINK = "public"         -- ndmz uplink, and each NR's uplink veth
names.TONRS = "tonrs"           -- ndmz bridge towards the NRs
names.TONRS_ADDR = "100.127.0.1/16"
names.TONRS_GATEWAY = "100.127.0.1"
names.NR_UPLINK_RANGE = "100.127.0.0/16"
-- IPv6 between the ndmz and its NRs: a unique-local /64 no network may
-- use ("zmesh" in its global id), the ndmz at ::1, each NR at an address
-- its network id alone gives (names.nr_uplink6), so that the ndmz can
-- route to an NR without asking it.
names.NR_UPLINK6_RANGE = "fd7a:6d65:7368::/64"
names.TONRS_ADDR6 = "fd7a:6d65:7368::1/64"
names.TONRS_GATEWAY6 = "fd7a:6d65:7368::1"
names.CONTAINER_IF = "eth0"

-- A network id: 1..12 of [a-z0-9], so "w-<id>" fits in 15 characters.
function names.valid_net_id(id)
  return type(id) == "string" and id:match("^[a-z0-9]+$") ~= nil and #id <= 12
end

-- NET_ID's NR uplink address in NR_UPLINK6_RANGE (without length): the
-- id as a number in bijective base 37 ("a" = 1 … "9" = 36), 1..12
-- characters, below 2^63: one address per id, never ::0 or ::1 (no id
-- is empty; "a" is 1, hence ::1 too, so one more is added).
function names.nr_uplink6(net_id)
  local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  local v = 0
  for i = 1, #net_id do
    v = v * 37 + alphabet:find(net_id:sub(i, i), 1, true)
  end
  v = v + 1
  local ip = require "zmesh.ip"
  return ip.format_addr(ip.parse_addr(string.format("fd7a:6d65:7368:0:%x:%x:%x:%x", (v >> 48) & 0xffff,
    (v >> 32) & 0xffff, (v >> 16) & 0xffff, v & 0xffff)))
end

-- Where userspace WireGuard daemons listen (the real `wg` looks there).
names.WG_SOCKET_DIR = "/run/wireguard"
-- Where iproute2 and the core keep named network namespaces.
names.NETNS_DIR = "/run/netns"

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
