-- The net.* entry points (`zmesh call net.render '{"file": …, "node": …}'`):
-- each loads the network file named by "file", does one thing, writes the
-- file back (atomically) when it changed it, and returns a result table.
-- "policy_dir" (a directory or a list) is searched for policies first.
local json = require "zmesh.json"
local model = require "zmesh.net.model"
local net = require "zmesh.net"
local validate = require "zmesh.net.validate"

local entries = {}

local common = { file = true, policy_dir = true }

-- Refuse parameters the entry does not know: a typo must not be ignored.
local function check(params, known)
  if type(params) ~= "table" then error("params: expected a JSON object", 0) end
  for k, v in pairs(params) do
    if not common[k] and not known[k] then validate.fail(tostring(k), v, "is not a parameter of this entry point") end
  end
  if type(params.file) ~= "string" or params.file == "" then
    validate.fail("file", params.file, "must be the path of a network file")
  end
  local dir = params.policy_dir
  if dir ~= nil and type(dir) ~= "string" and type(dir) ~= "table" then
    validate.fail("policy_dir", dir, "must be a directory or a list of them")
  end
  return { policy_dir = dir }
end

local function text(field, v, optional)
  if v == nil and optional then return nil end
  if type(v) ~= "string" or v == "" then validate.fail(field, v, "must be a non-empty string") end
  return v
end

entries.describe = {
  new = "create a network file: name, ip_range, ipv6_range?, routed_ipv6?, net_id?",
  ["add-node"] = "add a node from its facts (facts or facts_file); subnet?, ipv6_subnet?, port?, update?",
  ["remove-node"] = "remove node NODE; re-rendering moves what it served",
  ["set-exit"] = "make node NODE the sole Internet exit, or a list: the exit then its fallbacks (null or \"none\": local breakout)",
  ["set-routed-ipv6"] = "give the network the routed IPv6 prefix PREFIX (a /64 of it per NR; \"none\" removes it)",
  expose = "open PORT (\"8080/tcp\") of ADDRESS in NODE's routed /64 to the Internet (node, address, port, proto?)",
  unexpose = "close what expose opened (node, address, port, proto?)",
  ["add-access"] = "add an external device NAME (via?); returns its wg-quick config",
  ["remove-access"] = "remove external device NAME",
  show = "the network: nodes, roles, aggregators, exit, devices",
  validate = "check the network file and every NR's render",
  render = "the NR config of node NODE (or all = true: every node's)",
  graph = "the topology as Graphviz DOT",
  publish = "write every node's NR config to the fleet's NATS bucket (nats, nkey?, bucket?, force?, replicas?)",
  check = "the fleet-wide matrix of every NR pair from the status the nodes published (nats, …)",
  ["graph-live"] = "the topology as Graphviz DOT with the live WireGuard edges the nodes published (nats, …)",
  ["nats-facts"] = "node NODE's facts, as it published them in the bucket (nats, …)",
  ["nats-config"] = "the NATS servers' configuration and the nkeys for the nodes of file (and files?): servers, out, nodes?",
}

entries.new = function(p)
  local opts = check(p, { name = true, ip_range = true, ipv6_range = true, routed_ipv6 = true, net_id = true })
  local n = net.new({ name = p.name, ip_range = p.ip_range, ipv6_range = p.ipv6_range,
    routed_ipv6 = p.routed_ipv6, net_id = p.net_id })
  -- Policies load before the file is written: a broken one leaves no file.
  local shown = net.show(n, opts)
  net.save(n, p.file, { new = true })
  return shown
end

entries["add-node"] = function(p)
  local opts = check(p, { facts = true, facts_file = true, subnet = true, ipv6_subnet = true,
    port = true, update = true })
  local facts = p.facts
  if facts == nil then
    local err
    facts, err = json.read_file(text("facts_file", p.facts_file))
    if facts == nil then error("facts_file: " .. tostring(err), 0) end
  end
  if p.port ~= nil and math.type(p.port) == nil then validate.fail("port", p.port, "must be an integer") end
  opts.subnet, opts.ipv6_subnet, opts.update = p.subnet, p.ipv6_subnet, p.update == true
  opts.port = p.port and (math.tointeger(p.port) or p.port)
  local n, node, changes = net.add_node(net.load(p.file), facts, opts)
  net.save(n, p.file)
  return {
    node_id = node.node_id, subnet = node.subnet, ipv6_subnet = node.ipv6_subnet,
    routed_ipv6_subnet = node.routed_ipv6_subnet,
    wireguard_listen_port = node.wireguard_listen_port, wireguard_public_key = node.wireguard_public_key,
    -- --update: what changed in the node's facts (nothing: an empty list).
    changes = changes and json.array(changes) or nil,
  }
end

entries["remove-node"] = function(p)
  local opts = check(p, { node = true })
  local n, notes = net.remove_node(net.load(p.file), text("node", p.node), opts)
  net.save(n, p.file)
  return { removed = p.node, notes = json.array(notes) }
end

-- {file, node}: node is one id, a list of ids (the exit, then its
-- fallbacks in order), or null / "none".
entries["set-exit"] = function(p)
  local opts = check(p, { node = true, probe = true })
  local ids = p.node
  if ids == json.null or ids == "none" then ids = nil end
  if type(ids) == "string" then ids = { ids } end
  if ids ~= nil then
    if type(ids) ~= "table" then validate.fail("node", ids, "must be a node id or a list of them") end
    for i, id in ipairs(ids) do text(string.format("node[%d]", i), id) end
  end
  local probes = p.probe
  if type(probes) == "string" then probes = { probes } end
  opts.internet_targets = probes
  local n, notes = net.set_exit(net.load(p.file), ids, opts)
  net.save(n, p.file)
  local exits = model.exits(n)
  return { exit = exits[1] or json.null, exits = json.array(exits), notes = json.array(notes or {}) }
end

entries["set-routed-ipv6"] = function(p)
  local opts = check(p, { prefix = true })
  local prefix = p.prefix
  if prefix == json.null then prefix = nil end
  if prefix ~= nil then text("prefix", prefix) end
  local n, notes = net.set_routed_ipv6(net.load(p.file), prefix, opts)
  net.save(n, p.file)
  local nodes = {}
  for _, node in ipairs(n.nodes) do
    nodes[#nodes + 1] = { node_id = node.node_id, routed_ipv6_subnet = node.routed_ipv6_subnet }
  end
  return { routed_ipv6 = n.routed_ipv6 or json.null, nodes = json.array(nodes), notes = json.array(notes) }
end

local function exposure_params(p)
  text("node", p.node)
  text("address", p.address)
  if type(p.port) ~= "string" and math.type(p.port) ~= "integer" then
    validate.fail("port", p.port, "must be PORT/PROTO (\"8080/tcp\") or a port with proto")
  end
  return { node = p.node, address = p.address, port = p.port, proto = p.proto }
end

-- expose and unexpose: the same parameters, net.expose or net.unexpose.
local function exposure_entry(change)
  return function(p)
    local opts = check(p, { node = true, address = true, port = true, proto = true })
    local n, x = change(net.load(p.file), exposure_params(p), opts)
    net.save(n, p.file)
    return x
  end
end

entries.expose = exposure_entry(net.expose)
entries.unexpose = exposure_entry(net.unexpose)

entries["add-access"] = function(p)
  local opts = check(p, { name = true, via = true })
  opts.via = text("via", p.via, true)
  local n, config, device = net.add_access(net.load(p.file), text("name", p.name), opts)
  net.save(n, p.file)
  return {
    name = device.name, address = device.address, ipv6_address = device.ipv6_address,
    via = device.via, wireguard_public_key = device.wireguard_public_key, config = config,
  }
end

entries["remove-access"] = function(p)
  local opts = check(p, { name = true })
  local n = net.remove_access(net.load(p.file), text("name", p.name), opts)
  net.save(n, p.file)
  return { removed = p.name }
end

local function arrays(s)
  s.nodes, s.access, s.expose = json.array(s.nodes), json.array(s.access), json.array(s.expose or {})
  return s
end

entries.show = function(p)
  local opts = check(p, {})
  return arrays(net.show(net.load(p.file), opts))
end

entries.validate = function(p)
  local opts = check(p, {})
  local s = arrays(net.validate(net.load(p.file), opts))
  s.valid = true
  return s
end

entries.render = function(p)
  local opts = check(p, { node = true, all = true })
  local n = net.load(p.file)
  if p.all == true then
    if p.node ~= nil then validate.fail("node", p.node, "cannot go with all = true") end
    return json.object(net.render_all(n, opts))
  end
  return net.render(n, text("node", p.node), opts)
end

-- A node check report (`zmesh node check --json`): a list of NR
-- reports, each {net_id, node_id, peers = {id → {reachable, peer,
-- handshake_age, rx_bytes, tx_bytes, …}}}; raises naming the first part
-- that is not so (WHERE: the report's field, status[i]).
local function check_report(r, where)
  if json.kind(r) == "object" or (next(r) ~= nil and r[1] == nil) then
    validate.fail(where, r, "is not a node check report (a list of NR reports, from zmesh node check --json)")
  end
  local types = { peer = "string", reachable = "boolean", handshake_age = "number", rx_bytes = "number",
    tx_bytes = "number" }
  for j, nr in ipairs(r) do
    local at = string.format("%s[%d]", where, j)
    if type(nr) ~= "table" or json.kind(nr) == "array" then validate.fail(at, nr, "must be an NR report (an object)") end
    for _, k in ipairs({ "net_id", "node_id" }) do
      if type(nr[k]) ~= "string" then validate.fail(at .. "." .. k, nr[k], "must be a string") end
    end
    if nr.peers ~= nil and (type(nr.peers) ~= "table" or json.kind(nr.peers) == "array") then
      validate.fail(at .. ".peers", nr.peers, "must be an object of peers by node id")
    end
    for id, p in pairs(nr.peers or {}) do
      local pat = at .. ".peers." .. tostring(id)
      if type(p) ~= "table" or json.kind(p) == "array" then validate.fail(pat, p, "must be an object") end
      for k, want in pairs(types) do
        if p[k] ~= nil and type(p[k]) ~= want then validate.fail(pat .. "." .. k, p[k], "must be a %s", want) end
      end
    end
  end
end

-- {file, status = [files]}: with status, the live graph from node check
-- reports (`zmesh node check --json` on each node).
entries.graph = function(p)
  local opts = check(p, { status = true })
  local n = net.load(p.file)
  if p.status ~= nil then
    local files = type(p.status) == "string" and { p.status } or p.status
    if type(files) ~= "table" then validate.fail("status", p.status, "must be a file or a list of files") end
    local reports = {}
    for i, f in ipairs(files) do
      local r, err = json.read_file(text(string.format("status[%d]", i), f))
      if type(r) ~= "table" then validate.fail(string.format("status[%d]", i), f, tostring(err or "not a report")) end
      check_report(r, string.format("status[%d]", i))
      reports[i] = r
    end
    return { dot = require("zmesh.net.graph").live(n, reports) }
  end
  return { dot = net.graph(n, opts) }
end

-- ---- the fleet's control plane (NATS JetStream, zmesh.control) ----

local fleet_params = require("zmesh.control.fleet").PARAMS

local function with_nats(extra)
  local known = {}
  for k in pairs(fleet_params) do known[k] = true end
  for _, k in ipairs(extra or {}) do known[k] = true end
  return known
end

local function nats_params(p)
  if p.nats == nil then validate.fail("nats", nil, "needs the NATS URLs (nats://HOST[:PORT], a list or comma-separated)") end
  for _, k in ipairs({ "nkey", "creds", "user", "password_file", "bucket" }) do text(k, p[k], true) end
  if p.timeout ~= nil and type(p.timeout) ~= "number" then validate.fail("timeout", p.timeout, "must be seconds") end
end

entries.publish = function(p)
  local opts = check(p, with_nats({ "force", "replicas" }))
  nats_params(p)
  if p.replicas ~= nil and (math.type(p.replicas) ~= "integer" or p.replicas < 1 or p.replicas > 5) then
    validate.fail("replicas", p.replicas, "must be 1..5")
  end
  local q = {}
  for k, v in pairs(p) do q[k] = v end
  q.policy_dir, q.force = opts.policy_dir, p.force == true
  return require("zmesh.net.publish").run(q)
end

entries.check = function(p)
  check(p, with_nats())
  nats_params(p)
  return require("zmesh.control.fleet").check(net.load(p.file), p)
end

entries["graph-live"] = function(p)
  check(p, with_nats())
  nats_params(p)
  return { dot = require("zmesh.control.fleet").graph(net.load(p.file), p) }
end

entries["nats-facts"] = function(p)
  check(p, with_nats({ "node" }))
  nats_params(p)
  return require("zmesh.control.fleet").facts(p, text("node", p.node))
end

entries["nats-config"] = function(p)
  check(p, { files = true, servers = true, out = true, nodes = true, bucket = true, store_dir = true,
    cluster = true })
  local files = { p.file }
  if p.files ~= nil then
    if type(p.files) ~= "table" then validate.fail("files", p.files, "must be a list of network files") end
    for i, f in ipairs(p.files) do files[#files + 1] = text(string.format("files[%d]", i), f) end
  end
  local networks = {}
  for i, f in ipairs(files) do networks[i] = net.load(f) end
  if type(p.servers) ~= "table" or #p.servers == 0 then
    validate.fail("servers", p.servers, "must list the servers, NAME=HOST[:PORT[:CLUSTER_PORT]]")
  end
  local res = require("zmesh.control.serverconf").generate({ networks = networks, sources = files,
    nodes = p.nodes, servers = p.servers, out = text("out", p.out), bucket = text("bucket", p.bucket, true),
    store_dir = text("store_dir", p.store_dir, true), cluster = text("cluster", p.cluster, true) })
  res.files, res.seeds_made, res.nodes, res.urls = json.array(res.files), json.array(res.seeds_made),
    json.array(res.nodes), json.array(res.urls)
  return res
end

return entries
