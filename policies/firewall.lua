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
--       wg      = "w-<netid>"       the WireGuard interface
--       bridge  = "b-<netid>"       the container bridge (informative)
--       table   = "zmesh"           the table name (optional)
--       routed  = "2001:db8:100::/48"  the network's routed IPv6 prefix
--                                   (optional: a global prefix a provider
--                                   routes to the network's exit)
--       routed_subnet = "2001:db8:100:4::/64"  this NR's /64 of it
--       entry   = true              this NR is an exit candidate: the
--                                   prefix enters the network here from
--                                   its node's uplink (optional)
--       expose  = { { address = "2001:db8:100:4::10", proto = "tcp",
--                     port = 8080 }, … }  what the user opened to the
--                                   Internet (`zmesh net expose`), inside
--                                   routed: an entry NR opens them all from
--                                   its uplink, every NR those in its own
--                                   /64 from the tunnel (optional)
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
--       range6   = "fd7a:6d65:7368::/64"  the NRs' IPv6 uplink range behind
--                                   the bridge (optional, this default)
--       table    = "zmesh"          (optional)
--
-- The returned description is validated; any unknown key or value is an
-- error naming this policy. The table is replaced whole and atomically.
-- A hook is a function of its ctx: a writer keeps the ruleset it gave for
-- a ctx while this file's text is unchanged, and does not call it again.
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
--
-- IPv6 from the NRs leaves masqueraded like IPv4 (local breakout), but a
-- routed prefix keeps its addresses: an entry NR forwards its network's
-- routed traffic without NAT66, and the ndmz masquerades only the NRs'
-- own uplink range, so routed sources pass as they are. Inbound, the ndmz
-- forwards what is routed to an NR (any IPv6 destination behind the
-- bridge outside the NRs' uplink range: only routed prefixes are) and the
-- NR decides: the diode, but for the ports the user exposed, enforced at
-- the entry NR (from its uplink) and at the container's own NR (from the
-- tunnel, for what does not come from the network's own prefixes).
-- TCP SYNs in every forward path get their MSS clamped to the route's MTU
-- (tcp_mss "pmtu"), so that TCP fits tunnels and uplinks of any MTU.
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

local NR6_RANGE = "fd7a:6d65:7368::/64"

local function need_address(v, where, prefix_of)
  local p = type(v) == "string" and not v:find("/", 1, true) and ip.parse_addr(v)
  if not p or p.family ~= 6 or (prefix_of and not ip.contains(prefix_of, p)) then
    error(string.format("%s: IPv6 address%s expected, got %s", where,
      prefix_of and (" in " .. ip.format_cidr(prefix_of)) or "", tostring(v)), 3)
  end
  return v
end

-- The exposures of ctx, checked: { address, proto, port }.
local function exposures(ctx, within)
  local list = ctx.expose or {}
  if type(list) ~= "table" then error("ctx.expose: list expected, got " .. type(list), 3) end
  local out = {}
  for i, e in ipairs(list) do
    local where = string.format("ctx.expose[%d]", i)
    if type(e) ~= "table" then error(where .. ": table expected", 3) end
    if e.proto ~= "tcp" and e.proto ~= "udp" then
      error(string.format("%s.proto: tcp or udp expected, got %s", where, tostring(e.proto)), 3)
    end
    if math.type(e.port) ~= "integer" or e.port < 1 or e.port > 65535 then
      error(string.format("%s.port: 1..65535 expected, got %s", where, tostring(e.port)), 3)
    end
    out[i] = { address = need_address(e.address, where .. ".address", within), proto = e.proto,
      port = e.port }
  end
  return out
end

-- The rule opening one exposure from interface IIF.
local function open(iif, e)
  return { match = { iifname = iif, ip6_daddr = e.address, [e.proto .. "_dport"] = e.port },
    verdict = "accept", comment = string.format("expose %s %s/%d", e.address, e.proto, e.port) }
end

-- The diode on one uplink: input and forward chains. EXTRA_FORWARD goes
-- before the forward diode's last drop.
local function diode(up, extra_input, extra_forward)
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
      rules = (function()
        local rules = {
          -- First: an accept further down ends the chain.
          { tcp_mss = "pmtu", comment = "mss clamp" },
          { match = { iifname = up, ct_state = REPLIES }, verdict = "accept" },
          { match = { iifname = up, ct_state = "invalid" }, counter = true, verdict = "drop",
            comment = "forward invalid in" },
          { match = { oifname = up, ct_state = "invalid" }, counter = true, verdict = "drop",
            comment = "forward invalid out" },
        }
        for _, r in ipairs(extra_forward or {}) do rules[#rules + 1] = r end
        rules[#rules + 1] = { match = { iifname = up }, counter = true, verdict = "drop",
          comment = "forward diode" }
        return rules
      end)() },
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
  local extra_forward, mesh_side, routed = {}, {}, nil
  if ctx.routed ~= nil then
    routed = need_prefix(ctx, "routed", 6)
    local own = need_prefix(ctx, "routed_subnet", 6)
    local wg = need(ctx, "wg", "interface name")
    local list = exposures(ctx, ip.parse_cidr(routed))
    if ctx.entry then
      -- The entry point: from the uplink, what the user exposed (to any
      -- NR of the network), and replies; nothing else.
      for _, e in ipairs(list) do extra_forward[#extra_forward + 1] = open(up, e) end
    end
    -- From the tunnel into this NR's /64: the network's own prefixes
    -- pass; what the entry let in from the Internet, only replies and
    -- what this NR's containers expose.
    mesh_side[#mesh_side + 1] = { match = { iifname = wg, ip6_saddr = routed, ip6_daddr = own },
      verdict = "accept" }
    if ctx.range6 ~= nil then
      mesh_side[#mesh_side + 1] = { match = { iifname = wg, ip6_saddr = ctx.range6, ip6_daddr = own },
        verdict = "accept" }
    end
    mesh_side[#mesh_side + 1] = { match = { iifname = wg, ip6_daddr = own, ct_state = REPLIES },
      verdict = "accept" }
    local own_p = ip.parse_cidr(own)
    for _, e in ipairs(list) do
      if ip.contains(own_p, ip.parse_addr(e.address)) then mesh_side[#mesh_side + 1] = open(wg, e) end
    end
    mesh_side[#mesh_side + 1] = { match = { iifname = wg, ip6_daddr = own }, counter = true,
      verdict = "drop", comment = "forward diode (routed)" }
  end
  local chains = diode(up, nil, extra_forward)
  for _, r in ipairs(mesh_side) do table.insert(chains[2].rules, r) end
  local n = nat(up, keep)
  if routed and ctx.entry then
    -- The routed prefix leaves as it is: no NAT66.
    table.insert(n.rules, #n.rules, { match = { oifname = up, ip6_saddr = routed }, verdict = "accept",
      comment = "no masquerade of " .. routed })
  end
  chains[#chains + 1] = n
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
  local bridge = need(ctx, "bridge", "interface name")
  local range6 = ctx.range6 ~= nil and need_prefix(ctx, "range6", 6) or NR6_RANGE
  local chains = diode(up, extra, {
    -- Routed prefixes: the NR they are routed to decides.
    { match = { iifname = up, oifname = bridge, ip6_daddr = "!" .. range6 }, verdict = "accept",
      comment = "routed to an nr" },
  })
  local input = chains[1].rules
  for _, r in ipairs({
    { match = { iifname = bridge, ct_state = REPLIES }, verdict = "accept" },
    { match = { iifname = bridge, icmpv6_type = ND }, verdict = "accept",
      comment = "nrs neighbour discovery" },
    { match = { iifname = bridge }, counter = true, verdict = "drop", comment = "input from nrs" },
  }) do input[#input + 1] = r end
  local n = nat(up, {})
  -- IPv6 from the NRs' uplink range is masqueraded; a routed source keeps
  -- its address.
  table.insert(n.rules, 1, { match = { oifname = up, ip6_saddr = "!" .. range6 }, verdict = "accept",
    comment = "no masquerade of routed prefixes" })
  chains[#chains + 1] = n
  return { family = "inet", table = ctx.table or "zmesh", chains = chains }
end

return { name = "firewall", version = 1, nr = nr, ndmz = ndmz }
