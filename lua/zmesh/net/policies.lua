-- The network tool's four policies (role, subnet, aggregator, exit): loaded
-- from the search path, called through wrappers that check each answer
-- against the policy's contract. A policy that does not load, raises, or
-- answers outside its contract stops everything with "file:line: …".
local ip = require "zmesh.ip"
local model = require "zmesh.net.model"
local policy = require "zmesh.policy"

local policies = {}

local contracts = {
  role = { hooks = { "role", "endpoint" } },
  subnet = { hooks = { "subnet" } },
  aggregator = { hooks = { "aggregators" } },
  exit = { hooks = { "exit" } },
}

-- DIRS: a directory or a list of them, searched before $ZMESH_POLICY_PATH
-- and the defaults.
local function dir_list(dirs)
  if dirs == nil then return {} end
  if type(dirs) == "string" then dirs = { dirs } end
  -- A mistyped directory would quietly give the default policies.
  for _, d in ipairs(dirs) do
    local f = type(d) == "string" and io.open(d .. "/.")
    if not f then error(string.format("policy_dir: '%s' is not a directory", tostring(d)), 0) end
    f:close()
  end
  return dirs
end

-- The four policies, { role = …, subnet = …, … }; raises on failure.
function policies.load(dirs)
  local set = {}
  for _, name in ipairs({ "role", "subnet", "aggregator", "exit" }) do
    local p, err = policy.load(name, contracts[name], { path = dir_list(dirs) })
    if not p then error(err, 0) end
    set[name] = p
  end
  return set
end

-- A value a policy answered, as a message shows it: cut to 64
-- characters with its length (policy.breach escapes what is left).
local function said(v)
  local text = tostring(v)
  if type(v) == "string" and #text > 64 then text = text:sub(1, 64) .. "… (" .. #v .. " bytes)" end
  return text
end

function policies.role(set, facts)
  local p = set.role
  local r = policy.call(p, "role", facts)
  if r ~= "public" and r ~= "hidden" then
    policy.breach(p, "role", "node %s: returned %s, expected \"public\" or \"hidden\"",
      facts.node_id, said(r))
  end
  return r
end

-- The address (text) FROM dials to reach TO, or nil.
function policies.endpoint(set, from, to)
  local p = set.role
  local a = policy.call(p, "endpoint", from, to)
  if a ~= nil and (type(a) ~= "string" or a:find("/", 1, true) or not ip.parsed(a)) then
    policy.breach(p, "endpoint", "from %s to %s: returned %s, expected an address or nil",
      tostring(from.node_id), to.node_id, said(a))
  end
  return a
end

-- { subnet, ipv6_subnet, routed_ipv6_subnet } for REQ (see
-- policies/subnet.lua); raises the policy's reason when it finds none.
function policies.subnet(set, req, range, range6, routed)
  local p = set.subnet
  local r, reason = policy.call(p, "subnet", req)
  if r == nil then error(string.format("%s: %s", req.node_id, tostring(reason or "no free subnet")), 0) end
  if type(r) ~= "table" then policy.breach(p, "subnet", "returned %s, expected a table", type(r)) end
  local s = type(r.subnet) == "string" and ip.parse_cidr(r.subnet, { strict = true })
  if not s or s.family ~= 4 or s.len ~= 24 or not ip.contains(range, s) then
    policy.breach(p, "subnet", "subnet %s is not a /24 inside %s", tostring(r.subnet), req.ip_range)
  end
  if req.subnet and r.subnet ~= req.subnet then
    policy.breach(p, "subnet", "returned subnet %s, but the user fixed %s", r.subnet, req.subnet)
  end
  -- A /24 the user fixed is checked against the network later, as the user's.
  if not req.subnet and (req.used[ip.format_cidr(s)] or not model.mesh_usable(s)) then
    policy.breach(p, "subnet", "subnet %s is in use or has no usable mesh address", r.subnet)
  end
  local out = { subnet = ip.format_cidr(s) }
  -- "Exactly when": an answer the network has no range for is a breach.
  if not range6 and r.ipv6_subnet ~= nil then
    policy.breach(p, "subnet", "returned ipv6_subnet %s, but the network has no ipv6_range", said(r.ipv6_subnet))
  end
  if not routed and r.routed_ipv6_subnet ~= nil then
    policy.breach(p, "subnet", "returned routed_ipv6_subnet %s, but the network has no routed_ipv6",
      said(r.routed_ipv6_subnet))
  end
  if range6 then
    local s6 = type(r.ipv6_subnet) == "string" and ip.parse_cidr(r.ipv6_subnet, { strict = true })
    if not s6 or s6.family ~= 6 or s6.len ~= 64 or not ip.contains(range6, s6) then
      policy.breach(p, "subnet", "ipv6_subnet %s is not a /64 inside %s", tostring(r.ipv6_subnet), req.ipv6_range)
    end
    if req.used_ipv6[ip.format_cidr(s6)] then
      policy.breach(p, "subnet", "ipv6_subnet %s is in use", r.ipv6_subnet)
    end
    out.ipv6_subnet = ip.format_cidr(s6)
  end
  if routed then
    local sr = type(r.routed_ipv6_subnet) == "string" and ip.parse_cidr(r.routed_ipv6_subnet, { strict = true })
    if not sr or sr.family ~= 6 or sr.len ~= 64 or not ip.contains(routed, sr) then
      policy.breach(p, "subnet", "routed_ipv6_subnet %s is not a /64 inside %s", tostring(r.routed_ipv6_subnet),
        req.routed_ipv6)
    end
    if req.used_routed[ip.format_cidr(sr)] then
      policy.breach(p, "subnet", "routed_ipv6_subnet %s is in use", r.routed_ipv6_subnet)
    end
    out.routed_ipv6_subnet = ip.format_cidr(sr)
  end
  return out
end

-- { [hidden_id] = { public ids } } for REQ (see policies/aggregator.lua).
-- UNSERVED(h) runs before a hidden NR without aggregator is blamed on
-- the policy; it raises when the network is at fault.
function policies.aggregators(set, unserved, req)
  local p = set.aggregator
  local r = policy.call(p, "aggregators", req)
  if type(r) ~= "table" then policy.breach(p, "aggregators", "returned %s, expected a table", type(r)) end
  local public = {}
  for _, id in ipairs(req.public) do public[id] = true end
  for _, h in ipairs(req.hidden) do
    local list = r[h]
    if type(list) ~= "table" or #list == 0 then
      unserved(h)
      policy.breach(p, "aggregators", "gave %s no aggregator", h)
    end
    local seen = {}
    for _, a in ipairs(list) do
      if not public[a] then policy.breach(p, "aggregators", "gave %s aggregator %s, not a public NR", h, tostring(a)) end
      if seen[a] then policy.breach(p, "aggregators", "gave %s aggregator %s twice", h, a) end
      if not req.reachable(h, a) then
        policy.breach(p, "aggregators", "gave %s aggregator %s, which it cannot reach", h, a)
      end
      seen[a] = true
    end
  end
  return r
end

-- The exit candidates, in order (the first is the exit in use): a list,
-- empty for local breakout. The policy answers an id, a list of ids, or nil.
function policies.exit(set, req)
  local p = set.exit
  local r = policy.call(p, "exit", req)
  if r == nil then return {} end
  local list = type(r) == "table" and r or { r }
  local known, seen, out = {}, {}, {}
  for _, n in ipairs(req.nodes) do known[n.node_id] = true end
  for _, id in ipairs(list) do
    if not known[id] then policy.breach(p, "exit", "returned %s, not an NR of the network", said(id)) end
    if seen[id] then policy.breach(p, "exit", "returned %s twice", said(id)) end
    seen[id] = true
    out[#out + 1] = id
  end
  return out
end

return policies
