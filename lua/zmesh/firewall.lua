-- Firewall rulesets: the description a policy returns, checked here, then
-- applied by core.nft as ONE nftables transaction on one table owned by
-- Zero-Mesh (default "inet zmesh"): the table is replaced whole, so the
-- kernel holds either the old ruleset or the new one, never a mix, and a
-- refused description leaves the old one untouched.
--
-- A description is a plain Lua table; unknown keys and values are errors
-- that name the key by its path ("chains[2].rules[1].match.tcp_dport: …").
--
--   {
--     family = "inet",          -- "inet" (default) | "ip" | "ip6"
--     table  = "zmesh",         -- default "zmesh"
--     chains = {                -- created in this order
--       { name = "input",
--         -- A base chain has type and hook; a regular chain has neither
--         -- and is reached by jump/goto.
--         type = "filter",      -- "filter" | "nat"
--         hook = "input",       -- prerouting|input|forward|output|postrouting
--         priority = 0,         -- default: filter 0, nat -100 (prerouting,
--                               -- output) or 100 (input, postrouting)
--         policy = "accept",    -- "accept" (default) | "drop"
--         rules = {
--           { match = {…},      -- all must hold (none: every packet)
--             counter = true,   -- count packets and bytes (see dump)
--             -- at most one action:
--             verdict = "accept" | "drop" | "reject" | "return",
--             jump = "chain", ["goto"] = "chain",   -- regular chains only
--             masquerade = true | { fully_random = true },
--             snat = "192.0.2.1" | { to = "192.0.2.1", fully_random = true },
--             dnat = "192.0.2.1" | { to = "192.0.2.1" },
--             tcp_mss = "pmtu", -- on TCP SYNs, the MSS option set to what
--                               -- the route's MTU allows (nft's "tcp flags
--                               -- syn tcp option maxseg size set rt mtu");
--                               -- the rule goes on; forward, output and
--                               -- postrouting hooks only
--             comment = "text", -- 1..128 characters, shown by nft and dump
--           },
--         } },
--     },
--   }
--
-- match keys (a rule tests them in this order):
--   iifname, oifname    "public" | "veth*" (prefix) | "!public" (not)
--   ct_state            "invalid" | { "established", "related" } (any of)
--   ip_saddr, ip_daddr  "192.0.2.1" | "10.1.0.0/16" | "!10.1.0.0/16"
--   ip6_saddr, ip6_daddr  the same for IPv6
--   l4proto             "tcp" | "udp" | "icmp" | "icmpv6" | 0..255
--   tcp_sport, tcp_dport, udp_sport, udp_dport
--                       22 | "1000-2000" | { 22, 80, 443 } (a set)
--   icmp_type, icmpv6_type  "echo-request" | 8 | { … } (a set)
-- A rule matches one IP family and one layer 4 protocol at most; ports and
-- ICMP types imply their l4proto (and, in an inet table, their family).
-- masquerade/snat belong in nat postrouting (snat also input), dnat in nat
-- prerouting/output, reject in input/forward/output/prerouting; in a
-- regular chain, the same holds for every base chain that reaches it.
-- From a base chain, jumps may not loop, nor nest 16 chains deep.
--
-- The vocabulary (names, numbers, default priorities, limits) is the C
-- core's (core.nft.names …): defined there once, used here. This is the one
-- validator; core.nft.apply only converts, and tests/fixtures/nft/cases.lua
-- proves that the two (with the kernel) accept and refuse the same things.
--
-- validate returns the description NORMALISED: defaults filled in, each
-- value in one spelling (a set sorted, one value not a set, a number with
-- a name by its name, an address in its shortest form, an l4proto its
-- ports imply left out …). core.nft.dump reads the kernel's table back
-- into the same shape, so two tables are the same exactly when their
-- normalised descriptions are equal (firewall.difference).
--
-- API:
--   firewall.validate(desc)     -> normalised copy | nil, "path: message"
--   firewall.apply(ns, desc)    -> true | nil, err, ename (validate, then
--                                  core.nft.apply; nothing changes on error)
--   firewall.dump(ns, opts)     -> core.nft.dump: the table as a normalised
--                                  description; handles and counters in .live
--   firewall.difference(dump, desc) -> nil | each differing chain's first difference, one line
--   firewall.counters(dump)     -> { [comment] = { packets=, bytes= } }
--   firewall.render(desc)       -> the table in nft(8) syntax
--   firewall.script(desc)       -> an `nft -f` script replacing the table
--   firewall.from_policy(role, ctx, opts) -> description | nil, err
--                                  (policies/firewall.lua, hook nr or ndmz)
local ip = require "zmesh.ip"
local vocab = require("zmesh.core").nft

local firewall = {}

firewall.names = vocab.names

local numbers, defaults, limits = vocab.numbers, vocab.defaults, vocab.limits
-- Jumps the kernel follows from a base chain (NFT_JUMP_STACK_SIZE).
local MAX_DEPTH = 16

local function set_of(list)
  local s = {}
  for i, v in ipairs(list) do s[v] = i end
  return s
end
local is = {}
for k, list in pairs(firewall.names) do is[k] = set_of(list) end

-- Errors travel as a table so that the path can be prefixed on the way up.
local Fail = {}
local function fail(path, fmt, ...)
  error(setmetatable({ msg = path .. ": " .. string.format(fmt, ...) }, Fail), 0)
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function fields(t, path, allowed)
  for k in pairs(t) do
    if type(k) ~= "string" then fail(path, "unexpected key %s", show(k)) end
    if not allowed[k] then fail(path, "unknown field '%s'", k) end
  end
end

local function list(t, path)
  if type(t) ~= "table" then fail(path, "a list expected, got %s", type(t)) end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > #t then
      fail(path, "a list expected (keys 1..n), found key %s", show(k))
    end
    n = n + 1
  end
  if n ~= #t then fail(path, "a list expected (keys 1..n)") end
  return t
end

local function name_ok(s)
  return type(s) == "string" and #s >= 1 and #s <= limits.name and not s:find("%z")
end

-- ---- matches ----

-- As the kernel's interface names (and link.c): printable ASCII, no '/'
-- or ':', not "." or "..".
local function check_ifname(v, path)
  if type(v) ~= "string" then fail(path, "interface name expected, got %s", type(v)) end
  local name = v:gsub("^!", "")
  local base = #name > 1 and name:match("^(.-)%*$") or name
  if #base == 0 or #base > limits.ifname or base:find("[^!-~]") or base:find("[/:%*]")
      or base == "." or base == ".." then
    fail(path, "invalid interface name %s", show(v))
  end
  return v
end

local function check_addr(v, path, v6)
  if type(v) ~= "string" then fail(path, "address or prefix expected, got %s", type(v)) end
  local neg, s = v:match("^(!?)(.*)$")
  local p, err = ip.parse_cidr(s, { strict = true, host_ok = true })
  if not p then fail(path, "%s", err) end
  if (p.family == 6) ~= v6 then
    fail(path, "%s is not an IPv%d address or prefix", show(v), v6 and 6 or 4)
  end
  if p.len == 0 then fail(path, "%s matches everything; leave the match out", show(v)) end
  local full = p.len == (v6 and 128 or 32)
  return neg .. ip.format_addr(p) .. (full and "" or "/" .. p.len)
end

-- A number by its name when it has one.
local function named(v, by_number)
  return by_number and by_number[v] or v
end

local function check_number(v, path, names, hi)
  if names and type(v) == "string" then
    if not names[v] then fail(path, "unknown value %s", show(v)) end
    return names[v]
  end
  if math.type(v) ~= "integer" then
    fail(path, "%s expected, got %s", names and "integer or name" or "integer", show(v))
  end
  if v < 0 or v > hi then fail(path, "%d out of range 0..%d", v, hi) end
  return v
end

local function reverse(map)
  local r = {}
  for k, v in pairs(map or {}) do r[v] = k end
  return r
end
local by_number = {
  l4proto = reverse(numbers.l4proto), icmp_type = reverse(numbers.icmp_type),
  icmpv6_type = reverse(numbers.icmpv6_type),
}

-- A value, a range "lo-hi" (ports), or a set: sorted, one value alone.
local function check_values(v, path, key, hi, range_ok)
  local names = numbers[key]
  if range_ok and type(v) == "string" then
    local lo, up = v:match("^(%d+)%-(%d+)$")
    lo, up = tonumber(lo), tonumber(up)
    if not lo or lo > hi or up > hi or lo >= up then
      fail(path, "%s is not a range lo-hi within 0..%d", show(v), hi)
    end
    return lo .. "-" .. up
  end
  if type(v) ~= "table" then return named(check_number(v, path, names, hi), by_number[key]) end
  list(v, path)
  if #v == 0 or #v > limits.set then fail(path, "a set needs 1..%d values", limits.set) end
  local seen, out = {}, {}
  for i, x in ipairs(v) do
    local n = check_number(x, path, names, hi)
    if seen[n] then fail(path, "value %s twice in the set", show(x)) end
    seen[n], out[i] = true, n
  end
  table.sort(out)
  for i, n in ipairs(out) do out[i] = named(n, by_number[key]) end
  if #out == 1 then return out[1] end
  return out
end

local function check_ct_state(v, path)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then fail(path, "state name or list expected, got %s", type(v)) end
  list(v, path)
  if #v == 0 then fail(path, "empty list") end
  local seen = {}
  for _, s in ipairs(v) do
    if not is.ct_state[s] then fail(path, "unknown value %s", show(s)) end
    if seen[s] then fail(path, "state %s listed twice", s) end
    seen[s] = true
  end
  local out = {}
  for _, s in ipairs(firewall.names.ct_state) do
    if seen[s] then out[#out + 1] = s end
  end
  return out
end

local match_check = {
  iifname = check_ifname, oifname = check_ifname, ct_state = check_ct_state,
  ip_saddr = function(v, p) return check_addr(v, p, false) end,
  ip_daddr = function(v, p) return check_addr(v, p, false) end,
  ip6_saddr = function(v, p) return check_addr(v, p, true) end,
  ip6_daddr = function(v, p) return check_addr(v, p, true) end,
  l4proto = function(v, p) return named(check_number(v, p, numbers.l4proto, 255), by_number.l4proto) end,
  icmp_type = function(v, p) return check_values(v, p, "icmp_type", 255, false) end,
  icmpv6_type = function(v, p) return check_values(v, p, "icmpv6_type", 255, false) end,
}
for _, k in ipairs({ "tcp_sport", "tcp_dport", "udp_sport", "udp_dport" }) do
  match_check[k] = function(v, p) return check_values(v, p, k, 65535, true) end
end

local function check_match(m, path, family)
  if type(m) ~= "table" then fail(path, "table expected, got %s", type(m)) end
  fields(m, path, is.match)
  local out = {}
  for k, v in pairs(m) do out[k] = match_check[k](v, path .. "." .. k) end
  local ip4 = m.ip_saddr or m.ip_daddr or m.icmp_type
  local ip6 = m.ip6_saddr or m.ip6_daddr or m.icmpv6_type
  if ip4 and ip6 then fail(path, "IPv4 and IPv6 matches in one rule") end
  if ip4 and family == "ip6" then fail(path, "IPv4 match in an ip6 table") end
  if ip6 and family == "ip" then fail(path, "IPv6 match in an ip table") end
  local tcp = m.tcp_sport or m.tcp_dport
  local udp = m.udp_sport or m.udp_dport
  local n, want = 0, nil
  if tcp then n, want = n + 1, "tcp" end
  if udp then n, want = n + 1, "udp" end
  if m.icmp_type then n, want = n + 1, "icmp" end
  if m.icmpv6_type then n, want = n + 1, "icmpv6" end
  if n > 1 then fail(path, "matches on two layer 4 protocols") end
  if want and out.l4proto ~= nil then
    if out.l4proto ~= want then fail(path .. ".l4proto", "contradicts the port or type match") end
    out.l4proto = nil -- implied: the kernel holds one test for both
  end
  if next(out) == nil then return nil end
  return out
end

-- ---- rules, chains ----

local rule_fields = set_of({ "match", "counter", "verdict", "jump", "goto",
  "masquerade", "snat", "dnat", "tcp_mss", "comment" })
local actions = { "verdict", "jump", "goto", "masquerade", "snat", "dnat", "tcp_mss" }

-- Where each action may stand (the kernel's rules, checked at commit).
local nat_hooks = { prerouting = true, input = true, output = true, postrouting = true }
local action_place = {
  masquerade = { type = "nat", hooks = { postrouting = true } },
  snat = { type = "nat", hooks = { postrouting = true, input = true } },
  dnat = { type = "nat", hooks = { prerouting = true, output = true } },
  reject = { hooks = { input = true, forward = true, output = true, prerouting = true } },
  -- The route's MTU is known only once the packet is routed.
  tcp_mss = { hooks = { forward = true, output = true, postrouting = true } },
}

local function check_nat(v, path, family)
  local out = {}
  if type(v) == "table" then
    fields(v, path, { to = true, fully_random = true })
    if v.fully_random ~= nil and type(v.fully_random) ~= "boolean" then
      fail(path .. ".fully_random", "boolean expected")
    end
    out.fully_random = v.fully_random or nil
    v = v.to
  end
  if type(v) ~= "string" then fail(path, "address or { to = address } expected") end
  local a = ip.parse_addr(v)
  if not a then fail(path, "%s is not an address", show(v)) end
  if (family == "ip" and a.family == 6) or (family == "ip6" and a.family == 4) then
    fail(path, "%s does not fit the table's family %s", v, family)
  end
  out.to = ip.format_addr(a)
  return out
end

local function check_rule(r, path, ctx)
  if type(r) ~= "table" then fail(path, "rule table expected, got %s", type(r)) end
  fields(r, path, rule_fields)
  local out = {}
  if r.match ~= nil then out.match = check_match(r.match, path .. ".match", ctx.family) end
  if r.counter ~= nil and type(r.counter) ~= "boolean" then
    fail(path .. ".counter", "boolean expected")
  end
  out.counter = r.counter or nil
  local found
  for _, a in ipairs(actions) do
    if r[a] ~= nil then
      if found then fail(path .. "." .. a, "a rule has one action, it already has '%s'", found) end
      found = a
    end
  end
  if found == "verdict" then
    if not is.verdict[r.verdict] then
      fail(path .. ".verdict", "unknown verdict %s (accept, drop, reject, return)", show(r.verdict))
    end
    out.verdict = r.verdict
  elseif found == "jump" or found == "goto" then
    local target = ctx.chains[r[found]]
    if type(r[found]) ~= "string" then fail(path .. "." .. found, "chain name expected") end
    if not target then fail(path .. "." .. found, "no chain '%s' in this table", r[found]) end
    if target.hook then
      fail(path .. "." .. found, "'%s' is a base chain; only regular chains are targets", r[found])
    end
    out[found] = r[found]
  elseif found == "masquerade" then
    local m = r.masquerade
    if type(m) == "table" then
      fields(m, path .. ".masquerade", { fully_random = true })
      if m.fully_random ~= nil and type(m.fully_random) ~= "boolean" then
        fail(path .. ".masquerade.fully_random", "boolean expected")
      end
      out.masquerade = m.fully_random and { fully_random = true } or true
    elseif m ~= true then
      fail(path .. ".masquerade", "true or { fully_random = … } expected")
    else
      out.masquerade = true
    end
  elseif found == "tcp_mss" then
    if not is.tcp_mss[r.tcp_mss] then
      fail(path .. ".tcp_mss", "unknown value %s (%s)", show(r.tcp_mss),
        table.concat(firewall.names.tcp_mss, ", "))
    end
    -- It rewrites TCP SYNs: the rule is about TCP (an l4proto "tcp" is
    -- implied, as ports imply theirs).
    local m = out.match or {}
    if (m.l4proto ~= nil and m.l4proto ~= "tcp") or m.udp_sport or m.udp_dport or m.icmp_type
        or m.icmpv6_type then
      fail(path .. ".tcp_mss", "rewrites TCP SYNs; the match is on another protocol")
    end
    if out.match then
      out.match.l4proto = nil
      if next(out.match) == nil then out.match = nil end
    end
    out.tcp_mss = r.tcp_mss
  elseif found then
    out[found] = check_nat(r[found], path .. "." .. found, ctx.family)
  end
  if (r.match == nil or next(r.match) == nil) and not r.counter and not found then
    fail(path, "empty rule: give a match, a counter or an action")
  end
  if r.comment ~= nil then
    if type(r.comment) ~= "string" or #r.comment < 1 or #r.comment > limits.comment
        or r.comment:find('[%z"\n]') then
      fail(path .. ".comment", "1..%d characters without quotes or newlines", limits.comment)
    end
    out.comment = r.comment
  end
  return out
end

local chain_fields = set_of({ "name", "type", "hook", "priority", "policy", "rules" })

local function check_head(c, path, seen)
  if type(c) ~= "table" then fail(path, "chain table expected, got %s", type(c)) end
  fields(c, path, chain_fields)
  if not name_ok(c.name) then fail(path .. ".name", "chain name (1..%d characters) expected", limits.name) end
  if seen[c.name] then fail(path .. ".name", "chain '%s' defined twice", c.name) end
  local out = { name = c.name }
  if c.type == nil and c.hook == nil and c.priority == nil and c.policy == nil then
    return out
  end
  if c.type == nil or c.hook == nil then
    fail(path .. (c.type and ".hook" or ".type"),
      "a base chain needs type and hook (a regular chain has neither)")
  end
  if not is.chain_type[c.type] then fail(path .. ".type", "unknown value %s", show(c.type)) end
  if not is.hook[c.hook] then fail(path .. ".hook", "unknown value %s", show(c.hook)) end
  if c.type == "nat" and not nat_hooks[c.hook] then
    fail(path .. ".hook", "a nat chain cannot hook %s", c.hook)
  end
  if c.priority ~= nil and (math.type(c.priority) ~= "integer"
      or c.priority < -2147483648 or c.priority > 2147483647) then
    fail(path .. ".priority", "32-bit integer expected")
  end
  if c.policy ~= nil and c.policy ~= "accept" and c.policy ~= "drop" then
    fail(path .. ".policy", "'accept' or 'drop' expected")
  end
  out.type, out.hook = c.type, c.hook
  out.priority = c.priority or defaults.priority[c.type][c.hook]
  out.policy = c.policy or defaults.policy
  return out
end

-- What the kernel checks from every base chain, through the chains it
-- jumps to: no loop, no nesting deeper than it follows, every action
-- allowed there. (Chains no base chain reaches are not checked: they can
-- never see a packet.)
local function check_jumps(out)
  local index = {}
  for i, c in ipairs(out.chains) do index[c.name] = i end
  local function walk(base, i, depth, stack)
    local c = out.chains[i]
    if stack[c.name] then
      fail(string.format("chains[%d]", i), "jumps loop back to chain '%s'", c.name)
    end
    if depth >= MAX_DEPTH then
      fail(string.format("chains[%d]", i), "jumps nest %d chains deep (less than %d, from chain '%s')",
        depth, MAX_DEPTH, base.name)
    end
    stack[c.name] = true
    for j, r in ipairs(c.rules or {}) do
      local kind = r.verdict or (r.masquerade and "masquerade") or (r.snat and "snat")
        or (r.dnat and "dnat") or (r.tcp_mss and "tcp_mss")
      local place = action_place[kind]
      local path = string.format("chains[%d].rules[%d]", i, j)
      local from = depth > 0 and string.format(" (reached from chain '%s')", base.name) or ""
      if place and place.type and base.type ~= place.type then
        fail(path, "%s needs a %s chain, '%s' is %s%s", kind, place.type, base.name, base.type, from)
      end
      if place and not place.hooks[base.hook] then
        fail(path, "%s is not allowed in a %s hook%s", kind, base.hook, from)
      end
      local target = r.jump or r["goto"]
      if target then walk(base, index[target], depth + 1, stack) end
    end
    stack[c.name] = nil
  end
  for i, c in ipairs(out.chains) do
    if c.hook then walk(c, i, 0, {}) end
  end
end

local function check_ruleset(desc)
  if type(desc) ~= "table" then fail("ruleset", "table expected, got %s", type(desc)) end
  fields(desc, "ruleset", { family = true, table = true, chains = true })
  local out = { family = desc.family or defaults.family, table = desc.table or defaults.table,
    chains = {} }
  if not is.family[out.family] then fail("family", "unknown value %s", show(out.family)) end
  if not name_ok(out.table) then fail("table", "table name (1..%d characters) expected", limits.name) end
  if desc.chains == nil then return out end
  list(desc.chains, "chains")
  local by_name = {}
  for i, c in ipairs(desc.chains) do
    local head = check_head(c, string.format("chains[%d]", i), by_name)
    by_name[head.name] = head
    out.chains[i] = head
  end
  for i, c in ipairs(desc.chains) do
    local path = string.format("chains[%d].rules", i)
    if c.rules ~= nil then
      list(c.rules, path)
      local ctx = { family = out.family, chains = by_name, chain = out.chains[i] }
      local rules = {}
      for j, r in ipairs(c.rules) do
        rules[j] = check_rule(r, string.format("%s[%d]", path, j), ctx)
      end
      out.chains[i].rules = #rules > 0 and rules or nil
    end
  end
  check_jumps(out)
  return out
end

-- A normalised copy of desc (defaults filled in), or nil and a message
-- naming the field.
function firewall.validate(desc)
  local ok, res = pcall(check_ruleset, desc)
  if ok then return res end
  if getmetatable(res) == Fail then return nil, res.msg end
  error(res, 0)
end

-- ---- apply, read back ----

local function core() return require("zmesh.core") end

-- Validate, then replace the table in ns (nil: own namespace, a name, or a
-- netns handle). A bad description returns nil, "EINVAL: path: message",
-- "EINVAL" and changes nothing.
function firewall.apply(ns, desc)
  local norm, err = firewall.validate(desc)
  if not norm then return nil, "EINVAL: " .. err, "EINVAL" end
  return core().nft.apply(ns, norm)
end

function firewall.dump(ns, opts) return core().nft.dump(ns, opts) end

function firewall.delete(ns, opts) return core().nft.delete(ns, opts) end

-- Counters of a dump by rule comment (rules without comment or counter are
-- left out): { ["diode"] = { packets = 3, bytes = 252, chain = "input" } }.
function firewall.counters(dump)
  local out = {}
  local live = dump.live and dump.live.chains or {}
  for i, c in ipairs(dump.chains or {}) do
    for j, r in ipairs(c.rules or {}) do
      -- Counters are in .live (core.nft.dump); a table of rules with their
      -- counters in them is read as well.
      local n = live[i] and live[i].rules[j] or r
      if r.comment and n and n.packets then
        out[r.comment] = { packets = n.packets, bytes = n.bytes, chain = c.name }
      end
    end
  end
  return out
end

-- ---- nft(8) syntax ----

local l4_names = { [1] = "icmp", [6] = "tcp", [17] = "udp", [58] = "ipv6-icmp" }

local function nft_values(v)
  if type(v) ~= "table" then return tostring(v) end
  if #v == 1 then return tostring(v[1]) end
  local parts = {}
  for i, x in ipairs(v) do parts[i] = tostring(x) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function nft_neg(key, v)
  local neg = v:sub(1, 1) == "!"
  return key .. (neg and " != " or " ") .. (neg and v:sub(2) or v)
end

local function nft_ifname(key, v)
  local neg = v:sub(1, 1) == "!"
  return string.format('%s %s"%s"', key, neg and "!= " or "", neg and v:sub(2) or v)
end

local function nft_addr(key, v)
  local full = v:find(":", 1, true) and "/128$" or "/32$"
  return nft_neg(key, (v:gsub(full, "")))
end

local function render_rule(r, family)
  if r.unknown then return "[" .. r.unknown .. "]" end
  local m, out = r.match or {}, {}
  local function add(s) out[#out + 1] = s end
  if m.iifname then add(nft_ifname("iifname", m.iifname)) end
  if m.oifname then add(nft_ifname("oifname", m.oifname)) end
  if m.ct_state then
    local states = {}
    local cts = type(m.ct_state) == "table" and m.ct_state or { m.ct_state }
    for _, s in ipairs(firewall.names.ct_state) do
      for _, x in ipairs(cts) do if x == s then states[#states + 1] = s end end
    end
    add("ct state " .. table.concat(states, ","))
  end
  if m.ip_saddr then add(nft_addr("ip saddr", m.ip_saddr)) end
  if m.ip_daddr then add(nft_addr("ip daddr", m.ip_daddr)) end
  if m.ip6_saddr then add(nft_addr("ip6 saddr", m.ip6_saddr)) end
  if m.ip6_daddr then add(nft_addr("ip6 daddr", m.ip6_daddr)) end
  if m.icmp_type then
    add("icmp type " .. nft_values(m.icmp_type))
  elseif m.icmpv6_type then
    add("icmpv6 type " .. nft_values(m.icmpv6_type))
  elseif m.tcp_sport or m.tcp_dport or m.udp_sport or m.udp_dport then
    for _, k in ipairs({ "tcp_sport", "tcp_dport", "udp_sport", "udp_dport" }) do
      if m[k] then add(k:gsub("_", " ") .. " " .. nft_values(m[k])) end
    end
  elseif m.l4proto then
    local n = numbers.l4proto[m.l4proto] or m.l4proto
    add("meta l4proto " .. (l4_names[n] or tostring(n)))
  end
  if r.counter then add("counter") end
  local function nat(kind, v)
    local fam = family == "inet" and (v.to:find(":") and " ip6" or " ip") or ""
    add(kind .. fam .. " to " .. v.to .. (v.fully_random and " fully-random" or ""))
  end
  if r.verdict then add(r.verdict) end
  if r.jump then add("jump " .. r.jump) end
  if r["goto"] then add("goto " .. r["goto"]) end
  if r.masquerade then
    add("masquerade" .. (type(r.masquerade) == "table" and r.masquerade.fully_random and " fully-random" or ""))
  end
  if r.snat then nat("snat", type(r.snat) == "table" and r.snat or { to = r.snat }) end
  if r.dnat then nat("dnat", type(r.dnat) == "table" and r.dnat or { to = r.dnat }) end
  if r.tcp_mss then add("tcp flags syn tcp option maxseg size set rt mtu") end
  if r.comment then add(string.format('comment "%s"', r.comment)) end
  return table.concat(out, " ")
end

-- The table in nft(8) syntax (as `nft list` prints it, but for counter
-- values and symbolic priorities). Raises on an invalid description.
function firewall.render(desc)
  local d, err = firewall.validate(desc)
  if not d then error(err, 2) end
  local out = { string.format("table %s %s {", d.family, d.table) }
  for i, c in ipairs(d.chains) do
    if i > 1 then out[#out + 1] = "" end
    out[#out + 1] = string.format("\tchain %s {", c.name)
    if c.hook then
      out[#out + 1] = string.format("\t\ttype %s hook %s priority %d; policy %s;",
        c.type, c.hook, c.priority, c.policy)
    end
    for _, r in ipairs(c.rules or {}) do
      local line = render_rule(r, d.family)
      out[#out + 1] = "\t\t" .. line
    end
    out[#out + 1] = "\t}"
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

-- An `nft -f` script that replaces the table in one transaction, as
-- core.nft.apply does: add (so that delete cannot fail), delete, define.
function firewall.script(desc)
  local d, err = firewall.validate(desc)
  if not d then error(err, 2) end
  return string.format("table %s %s\ndelete table %s %s\n%s",
    d.family, d.table, d.family, d.table, firewall.render(d))
end

-- ---- comparing tables ----

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- A value in a plan line: names bare, lists comma-separated.
local function brief(v)
  if v == nil then return "none" end
  if type(v) ~= "table" then return tostring(v) end
  if v.to then return v.to .. (v.fully_random and " fully-random" or "") end
  if v.fully_random then return "fully-random" end
  local parts = {}
  for i, x in ipairs(v) do parts[i] = tostring(x) end
  return table.concat(parts, ",")
end

-- What a rule does first, then what it matches, then the rest: the
-- first difference named is the one that matters most.
local rule_keys = {}
for _, k in ipairs({ "verdict", "jump", "goto", "masquerade", "snat", "dnat" }) do rule_keys[#rule_keys + 1] = k end
for _, k in ipairs(firewall.names.match) do rule_keys[#rule_keys + 1] = "match." .. k end
for _, k in ipairs({ "counter", "tcp_mss", "comment" }) do rule_keys[#rule_keys + 1] = k end

local function field(r, key)
  local m = key:match("^match%.(.*)$")
  if m then return r.match and r.match[m] end
  return r[key]
end

-- How two rules of the same place differ: "verdict: kernel accept, want drop".
local function rule_difference(k, w)
  local first, others = nil, {}
  for _, key in ipairs(rule_keys) do
    local a, b = field(k, key), field(w, key)
    if not same(a, b) then
      if first then
        others[#others + 1] = key
      else
        first = string.format("%s: kernel %s, want %s", key, brief(a), brief(b))
      end
    end
  end
  if first and #others > 0 then first = first .. " (also differs: " .. table.concat(others, ", ") .. ")" end
  return first
end

local function index_of(rules, r)
  for j, x in ipairs(rules) do if same(x, r) then return j end end
end

-- The first place where two rule lists differ, and how: a rule missing,
-- one not wanted, two out of order, or one changed (which field).
local function first_rule_difference(kr, wr, at, family)
  local function text(r) return render_rule(r, family) end
  for i = 1, math.max(#kr, #wr) do
    local k, w = kr[i], wr[i]
    if not same(k, w) then
      local p = string.format("%s.rules[%d]", at, i)
      local wanted_at = k and index_of(wr, k) -- where the kernel's rule belongs
      local kernel_at = w and index_of(kr, w) -- where the wanted one is
      if not k or (wanted_at and not kernel_at) then
        return string.format("%s: missing, want %s", p, text(w))
      end
      if not w or (kernel_at and not wanted_at) then
        return string.format("%s: not wanted, kernel has %s", p, text(k))
      end
      if wanted_at then
        return string.format("%s: out of order, kernel has rules[%d] (%s) here", p, wanted_at,
          text(k))
      end
      if k.unknown then
        return string.format("%s: kernel has a rule Zero-Mesh never writes %s, want %s", p,
          text(k), text(w))
      end
      return p .. " " .. rule_difference(k, w)
    end
  end
end

-- The first difference of a chain's rules, and how many rules differ
-- when more than one does (a rule changed in place counts once).
local function rules_difference(kr, wr, at, family)
  local first = first_rule_difference(kr, wr, at, family)
  if not first then return nil end
  local extra, missing = 0, 0
  for _, k in ipairs(kr) do if not index_of(wr, k) then extra = extra + 1 end end
  for _, w in ipairs(wr) do if not index_of(kr, w) then missing = missing + 1 end end
  local n = math.max(extra, missing)
  if n > 1 then first = string.format("%s (%d rules of %s differ)", first, n, at) end
  return first
end

-- How table KERNEL (core.nft.dump) differs from WANT (validated), handles
-- and counters aside, as one line: the first difference of each chain
-- that differs ("chains[1].rules[4] verdict: kernel accept, want drop;
-- chains[3]: missing chain postrouting"); nil when they are the same.
function firewall.difference(kernel, want)
  if kernel.unknown then
    return "table: kernel has what Zero-Mesh never writes (" .. kernel.unknown .. ")"
  end
  local kc, wc = kernel.chains or {}, want.chains or {}
  local found = {}
  for i = 1, math.max(#kc, #wc) do
    local k, w = kc[i], wc[i]
    local at = string.format("chains[%d]", i)
    local d
    if not k then
      d = string.format("%s: missing chain %s", at, w.name)
    elseif not w then
      d = string.format("%s: chain %s not wanted", at, k.name)
    else
      for _, f in ipairs({ "name", "unknown", "type", "hook", "priority", "policy" }) do
        if not d and k[f] ~= w[f] then
          d = string.format("%s %s: kernel %s, want %s", at, f, brief(k[f]), brief(w[f]))
        end
      end
      d = d or rules_difference(k.rules or {}, w.rules or {}, at, want.family)
    end
    found[#found + 1] = d
  end
  if #found > 0 then return table.concat(found, "; ") end
end

-- ---- policy ----

firewall.contract = { hooks = { "nr", "ndmz" } }

-- Rulesets given, by policy file, its text, role and context: a hook is a
-- function of its context (the contract), and a long-lived writer asks
-- for the same ruleset on every apply of every NR. Loading and validating
-- it each time was a fifth of a no-op apply.
local given, given_count = {}, 0

-- The ruleset policy "firewall" decides for ROLE ("nr" or "ndmz") given
-- ctx, validated; nil and a message naming the policy file on failure.
-- opts.path: extra policy directories, searched first.
function firewall.from_policy(role, ctx, opts)
  local policy = require "zmesh.policy"
  local json = require "zmesh.json"
  if role ~= "nr" and role ~= "ndmz" then
    return nil, string.format("unknown firewall role %s (nr, ndmz)", show(role))
  end
  local file, src = policy.source("firewall", opts)
  local encoded, ctx_text = pcall(json.encode, ctx)
  local key = file and encoded and table.concat({ file, src, role, ctx_text }, "\0")
  if key and given[key] then return json.copy(given[key]) end
  local p, err = policy.load("firewall", firewall.contract, opts)
  if not p then return nil, err end
  local ok, desc = pcall(policy.call, p, role, ctx)
  if not ok then return nil, tostring(desc) end
  local norm, verr = firewall.validate(desc)
  if not norm then
    return nil, string.format("%s: policy firewall: hook %s returned an invalid ruleset: %s",
      policy.where(p, role), role, verr)
  end
  if key then
    if given_count >= 512 then given, given_count = {}, 0 end
    given[key], given_count = json.copy(norm), given_count + 1
  end
  return norm
end

return firewall
