-- Policy "firewall": the nftables ruleset of an NR and of the ndmz.
--
-- Contract (loaded by zmesh.firewall.from_policy; a breach names this file
-- and line, and nothing is applied):
--
--   nr(ctx) → ruleset description (see lua/zmesh/firewall.lua)
--     ctx, read-only:
--       uplink  = "public"          the NR's veth towards the ndmz
--       range   = "10.1.0.0/16"     the user network's IPv4 range
--       range6  = "fd00:1::/48"     its IPv6 prefix (optional)
--       wg      = "w-<netid>"       the WireGuard interface (informative)
--       bridge  = "b-<netid>"       the container bridge (informative)
--       table   = "zmesh"           the table name (optional)
--
--   ndmz(ctx) → ruleset description
--     ctx, read-only:
--       uplink   = "public"         the node's uplink
--       bridge   = "tonrs"          the bridge towards the NRs
--       range    = "100.127.0.0/16" the NR uplink range behind the bridge
--       wg_ports = { 51820, … }     UDP ports of the WireGuard sockets that
--                                   live in the ndmz (optional, may be empty)
--       wg_port_range = { min = 51820, max = 52819 }
--                                   the node's whole WireGuard port range
--                                   (optional; what the node passes, so that
--                                   adding an NR never touches the ndmz)
--       dhcp     = true             the uplink is configured by DHCP (optional)
--       table    = "zmesh"          (optional)
--
-- The returned description is validated; any unknown key or value is an
-- error naming this policy. The table is replaced whole and atomically.
--
-- Default: an Internet "diode". Out of the uplink everything goes,
-- masqueraded (but not towards the network's own range, which keeps its
-- addresses); into the NR itself (input) AND through it to its containers
-- (forward) from the uplink only replies: ct state established,related.
-- ct state invalid from the uplink is dropped and counted, and so is
-- invalid traffic going out of it (masquerade skips invalid packets, which
-- would leave with the containers' private addresses). ICMPv6 neighbour
-- discovery on the uplink is allowed, or IPv6 on the link breaks. The
-- ndmz is the same diode towards the node's uplink, plus the WireGuard
-- ports of the NRs' tunnels (their sockets live in the ndmz) and DHCP
-- replies when asked. Towards the NRs the ndmz is a router only: nothing
-- arriving from the bridge may reach the ndmz itself (its uplink address,
-- 100.127.0.1, a socket listening there), only replies and neighbour
-- discovery, so that no tenant reaches the node's shared namespace. Every
-- drop counts packets, named by comment, so that `zmesh` can show what
-- the diode stopped.
local ip = require "zmesh.ip"

local ND = { "nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit",
  "nd-router-advert" }
local REPLIES = { "established", "related" }

local function need(ctx, key, what)
  local v = ctx[key]
  if type(v) ~= "string" or v == "" then
    error(string.format("ctx.%s: %s expected, got %s", key, what, tostring(v)), 2)
  end
  return v
end

local function need_prefix(ctx, key, family)
  local v = ctx[key]
  local p = ip.parse_cidr(v or "", { strict = true })
  if not p or p.family ~= family then
    error(string.format("ctx.%s: IPv%d prefix expected, got %s", key, family, tostring(v)), 2)
  end
  return v
end

-- The diode on one uplink: input and forward chains.
local function diode(up, extra_input)
  local input = {
    { match = { iifname = up, ct_state = REPLIES }, verdict = "accept" },
    { match = { iifname = up, ct_state = "invalid" }, counter = true, verdict = "drop",
      comment = "input invalid" },
    { match = { iifname = up, icmpv6_type = ND }, verdict = "accept",
      comment = "neighbour discovery" },
  }
  for _, r in ipairs(extra_input or {}) do input[#input + 1] = r end
  input[#input + 1] = { match = { iifname = up }, counter = true, verdict = "drop",
    comment = "input diode" }
  return {
    { name = "input", type = "filter", hook = "input", priority = 0, policy = "accept",
      rules = input },
    { name = "forward", type = "filter", hook = "forward", priority = 0, policy = "accept",
      rules = {
        { match = { iifname = up, ct_state = REPLIES }, verdict = "accept" },
        { match = { iifname = up, ct_state = "invalid" }, counter = true, verdict = "drop",
          comment = "forward invalid in" },
        { match = { oifname = up, ct_state = "invalid" }, counter = true, verdict = "drop",
          comment = "forward invalid out" },
        { match = { iifname = up }, counter = true, verdict = "drop",
          comment = "forward diode" },
      } },
  }
end

local function nat(up, keep)
  local rules = {}
  for _, k in ipairs(keep) do
    rules[#rules + 1] = { match = { oifname = up, [k.key] = k.range }, verdict = "accept",
      comment = "no masquerade to " .. k.range }
  end
  rules[#rules + 1] = { match = { oifname = up }, counter = true, masquerade = true,
    comment = "masquerade" }
  return { name = "postrouting", type = "nat", hook = "postrouting", priority = 100,
    policy = "accept", rules = rules }
end

local function nr(ctx)
  local up = need(ctx, "uplink", "interface name")
  local keep = { { key = "ip_daddr", range = need_prefix(ctx, "range", 4) } }
  if ctx.range6 ~= nil then
    keep[2] = { key = "ip6_daddr", range = need_prefix(ctx, "range6", 6) }
  end
  local chains = diode(up)
  chains[#chains + 1] = nat(up, keep)
  return { family = "inet", table = ctx.table or "zmesh", chains = chains }
end

local function ndmz(ctx)
  local up = need(ctx, "uplink", "interface name")
  local extra = {}
  local ports = ctx.wg_ports or {}
  if type(ports) ~= "table" then
    error("ctx.wg_ports: list of UDP ports expected, got " .. type(ports))
  end
  if #ports > 0 then
    local list = {}
    for i, p in ipairs(ports) do list[i] = p end
    extra[#extra + 1] = { match = { iifname = up, udp_dport = list }, verdict = "accept",
      comment = "wireguard" }
  end
  local range = ctx.wg_port_range
  if range ~= nil then
    if type(range) ~= "table" or math.type(range.min) ~= "integer" or math.type(range.max) ~= "integer" then
      error("ctx.wg_port_range: {min = port, max = port} expected")
    end
    extra[#extra + 1] = { match = { iifname = up,
        udp_dport = range.min == range.max and range.min or (range.min .. "-" .. range.max) },
      verdict = "accept", comment = "wireguard ports" }
  end
  if ctx.dhcp then
    extra[#extra + 1] = { match = { iifname = up, udp_sport = 67, udp_dport = 68 },
      verdict = "accept", comment = "dhcp" }
    extra[#extra + 1] = { match = { iifname = up, udp_sport = 547, udp_dport = 546 },
      verdict = "accept", comment = "dhcpv6" }
  end
  local chains = diode(up, extra)
  local bridge = need(ctx, "bridge", "interface name")
  local input = chains[1].rules
  for _, r in ipairs({
    { match = { iifname = bridge, ct_state = REPLIES }, verdict = "accept" },
    { match = { iifname = bridge, icmpv6_type = ND }, verdict = "accept",
      comment = "nrs neighbour discovery" },
    { match = { iifname = bridge }, counter = true, verdict = "drop", comment = "input from nrs" },
  }) do input[#input + 1] = r end
  chains[#chains + 1] = nat(up, {})
  return { family = "inet", table = ctx.table or "zmesh", chains = chains }
end

return { name = "firewall", version = 1, nr = nr, ndmz = ndmz }
