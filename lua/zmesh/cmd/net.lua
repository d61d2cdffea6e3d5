-- `zmesh net`: the network tool on the command line. Each subcommand
-- builds the parameters of the matching net.* entry point, calls it, and
-- prints its result for people (JSON where a program reads it).
local entries = require "zmesh.net.entries"
local json = require "zmesh.json"
local net = require "zmesh.net"

local function out(...) io.stdout:write(...) end

local function show_text(s)
  out(string.format("network %s (net_id %s): %s%s\n", s.name, s.net_id, s.ip_range,
    s.ipv6_range and (" " .. s.ipv6_range) or ""))
  out("exit: ", s.exit and (s.exit .. " (sole exit)") or "local breakout on every NR", "\n")
  if s.problem then out("problem: ", s.problem, "\n") end
  out(string.format("%-16s %-7s %-18s %-6s %s\n", "NODE", "ROLE", "SUBNET", "PORT", "AGGREGATORS / SERVES"))
  for _, n in ipairs(s.nodes) do
    local extra = n.aggregators and table.concat(n.aggregators, ", ")
      or (n.serves and n.serves > 0 and ("serves " .. n.serves)) or ""
    out(string.format("%-16s %-7s %-18s %-6s %s\n", n.node_id, n.role or "?", n.subnet,
      tostring(n.wireguard_listen_port), extra))
  end
  for _, a in ipairs(s.access) do
    out(string.format("device %-9s %-26s via %s\n", a.name, a.address, a.via))
  end
end

local function print_json(v) out(json.encode(v, { pretty = true }), "\n") end

-- name, positional parameters, options (flag → param, and whether it
-- takes a value), help text, and how to print the result.
local subcommands = {
  { name = "new", summary = "create a network file: name, IPv4 range, optional IPv6 prefix", args = { "file", "name", "ip_range" },
    options = { ["--ipv6"] = "ipv6_range", ["--id"] = "net_id" },
    usage = "FILE NAME IP_RANGE [--ipv6 PREFIX] [--id NET_ID]",
    help = [[Creates the network file FILE for a new network NAME with the private
IPv4 range IP_RANGE (e.g. 10.1.0.0/16; 100.64.0.0/10 is Zero-Mesh's own),
and optionally an IPv6 prefix (/64 or larger) for the NRs' /64s. NET_ID
(1-12 of [a-z0-9]) names the kernel objects on every node; a random one
is chosen when absent. Refuses to overwrite an existing file.]],
    print = function(r) out("created network ", r.name, " (net_id ", r.net_id, ")\n") end },
  { name = "add-node", summary = "add a node from its facts (optional fixed subnet and port)", args = { "file", "facts_file" },
    options = { ["--subnet"] = "subnet", ["--ipv6-subnet"] = "ipv6_subnet", ["--port"] = "port",
      ["--update"] = true },
    usage = "FILE FACTS.json|- [--subnet CIDR] [--ipv6-subnet CIDR] [--port N] [--update]",
    help = [[Adds a node to the network from its facts (what `zmesh node facts` prints
on that node; - reads standard input). The NR gets a /24 (and /64) from the
subnet policy unless fixed with --subnet/--ipv6-subnet, a listen port from
the node's range unless fixed with --port, and a new key pair: the private
key is sealed to the node's public key and never shown. --update refreshes
the facts of a node already in the network; it keeps its subnet and port,
and gets a new key pair when its node key changed. The file records each
hidden NR's aggregators, so that a new node never moves them.]],
    print = function(r)
      out(string.format("added %s: subnet %s%s, port %d\n", r.node_id, r.subnet,
        r.ipv6_subnet and (" " .. r.ipv6_subnet) or "", r.wireguard_listen_port))
    end },
  { name = "remove-node", summary = "remove a node; re-rendering moves what it served", args = { "file", "node" },
    usage = "FILE NODE",
    help = [[Removes NODE's NR from the network. Render again and re-apply everywhere:
hidden NRs it served move to their next aggregator (the warm backup), and
get a new backup; other hidden NRs keep theirs. Removing the sole exit
returns the network to local breakout; devices peering with NODE are
removed (add them again).]],
    print = function(r)
      out("removed ", r.removed, "\n")
      for _, n in ipairs(r.notes) do out("note: ", n, "\n") end
    end },
  { name = "set-exit", summary = "make one NR the sole Internet exit, or none", args = { "file", "node" },
    usage = "FILE NODE|none",
    help = [[Makes NODE's NR the sole Internet exit of the network: every other NR
sends 0.0.0.0/0 and ::/0 through the mesh to it, and it masquerades the
network's traffic out of its node. "none" returns to local breakout.]],
    params = function(p) if p.node == "none" then p.node = nil end end,
    print = function(r)
      out(r.exit ~= json.null and ("sole exit: " .. r.exit) or "no sole exit: local breakout", "\n")
    end },
  { name = "add-access", summary = "add an external device; prints its wg-quick config", args = { "file", "name" },
    options = { ["--via"] = "via" },
    usage = "FILE NAME [--via NODE]",
    help = [[Adds an external device NAME (a laptop) as a WireGuard client of one public
NR (NODE, or the aggregator policy's choice), and prints its wg-quick config
(e.g. for /etc/wireguard/NAME.conf). The config holds the device's private
key, which is shown this once and not stored: keep it private.]],
    print = function(r) out(r.config) end },
  { name = "remove-access", summary = "remove an external device", args = { "file", "name" },
    usage = "FILE NAME",
    help = [[Removes external device NAME from the network and frees its address.
Render again and re-apply the NR it peered with (its "via" node), so that
the device's key is no longer accepted there.]],
    print = function(r) out("removed device ", r.removed, "\n") end },
  { name = "show", summary = "show nodes, roles, subnets, aggregators, exit, devices", args = { "file" }, options = { ["--json"] = true },
    usage = "FILE [--json]",
    help = [[Shows the network: each node's role, subnet and listen port, the
aggregators of hidden NRs, the sole exit and the devices. A network that
cannot be rendered yet (e.g. hidden nodes only) shows with the problem;
a policy at fault is an error (exit status 1), as for every subcommand.]],
    print = function(r, p) if p.json then print_json(r) else show_text(r) end end },
  { name = "validate", summary = "check the file, the policies and every render", args = { "file" },
    usage = "FILE",
    help = [[Checks the network file (every field, with the one at fault named), the
policies' answers, and that every node's config renders. Exit status 0
when valid, 1 with the first problem otherwise.]],
    print = function(r)
      out(string.format("network %s is valid: %d NRs (%d public, %d hidden), %d device(s)\n",
        r.name, r.public + r.hidden, r.public, r.hidden, #r.access))
    end },
  { name = "render", summary = "print one node's NR config (JSON), or all of them", args = { "file", "node" },
    options = { ["--all"] = "all" },
    usage = "FILE NODE | FILE --all",
    help = [[Prints the NR config of NODE as JSON: what provisioning hands to that
node. It holds the subnet, listen port, the private key sealed to the
node's key, the peers with endpoints, AllowedIPs and keepalives, and the
exit route. --all prints every node's, as an object keyed by node id.]],
    -- Every config at once is N² peers: compact JSON, by the fast encoder.
    call = function(p)
      if not p.all then return entries.render(p) end
      if p.node ~= nil then error("node: cannot go with --all", 0) end
      return { text = net.render_all_json(net.load(p.file), { policy_dir = p.policy_dir }) }
    end,
    print = function(r)
      if r.text then out(r.text, "\n") else print_json(r) end
    end },
  { name = "graph", summary = "print the topology as Graphviz DOT", args = { "file" },
    usage = "FILE",
    help = [[Prints the topology as Graphviz DOT (e.g. | dot -Tsvg > net.svg): public
NRs as boxes, aggregators with a double border, hidden NRs dashed, bold
links to primary aggregators, dotted to backups, the exit in red.]],
    print = function(r) out(r.dot) end },
}

local function find(name)
  for _, s in ipairs(subcommands) do
    if s.name == name then return s end
  end
  return nil
end

local function usage_error(msg)
  io.stderr:write("zmesh net: ", msg, "\n")
  return 2
end

-- Split ARGS into entry parameters for subcommand S.
local function parse(s, args)
  local p, pos, policy_dirs = {}, {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--policy-dir" then
      if not args[i + 1] then return nil, "--policy-dir needs a directory" end
      policy_dirs[#policy_dirs + 1] = args[i + 1]
      i = i + 1
    elseif a:sub(1, 2) == "--" then
      local param = s.options and s.options[a]
      if not param then return nil, string.format("unknown option %s for %s", a, s.name) end
      if param == true then
        p[a:sub(3)] = true
      elseif param == "all" then
        p.all = true
      else
        if not args[i + 1] then return nil, a .. " needs a value" end
        p[param] = args[i + 1]
        i = i + 1
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if #policy_dirs > 0 then p.policy_dir = policy_dirs end
  local want = s.args
  if p.all then want = { "file" } end
  if #pos ~= #want then
    return nil, string.format("%s takes %s (see zmesh net %s --help)", s.name, s.usage, s.name)
  end
  for k, name in ipairs(want) do p[name] = pos[k] end
  return p
end

local function help_text()
  local lines = {
    "Defines a user network as a whole in a JSON network file, and renders the",
    "NR config for each node. Roles, subnets, aggregators and the exit are",
    "decided by the policies role, subnet, aggregator and exit, searched in",
    "--policy-dir DIR (repeatable), then $ZMESH_POLICY_PATH, then the defaults.",
    "",
    "subcommands:",
  }
  for _, s in ipairs(subcommands) do
    lines[#lines + 1] = string.format("  %-14s %s", s.name, s.summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "`zmesh net SUBCOMMAND --help` tells more. Exit status: 0 on success, 1 when"
  lines[#lines + 1] = "the network or a policy is at fault (one message naming the field and"
  lines[#lines + 1] = "value, or the policy's file and line), 2 for a usage error."
  return table.concat(lines, "\n")
end

local function run(args)
  -- One short run over a large parsed file: collecting half as often
  -- saves a fifth of a render's time (tests/bench/net_render.lua).
  collectgarbage("incremental", 400)
  local name = args[1]
  if not name then return usage_error("missing subcommand (see zmesh net --help)") end
  local s = find(name)
  if not s then return usage_error(string.format("unknown subcommand '%s' (see zmesh net --help)", name)) end
  local rest = table.move(args, 2, #args, 1, {})
  if rest[1] == "--help" or rest[1] == "-h" then
    out("usage: zmesh net ", s.name, " ", s.usage, "\n\n", s.help, "\n")
    return 0
  end
  local p, err = parse(s, rest)
  if not p then return usage_error(err) end
  if s.params then s.params(p) end
  if p.facts_file == "-" then
    local facts, perr = json.read(io.stdin, "standard input")
    if facts == nil then return usage_error("facts on standard input: " .. perr) end
    p.facts, p.facts_file = facts, nil
  end
  if p.port then
    p.port = tonumber(p.port)
    if not p.port then return usage_error("--port needs a number") end
  end
  local show_json = p.json
  p.json = nil
  local ok, result = pcall(s.call or entries[s.name], p)
  if not ok then
    io.stderr:write("zmesh net ", s.name, ": ", tostring(result), "\n")
    return 1
  end
  s.print(result, { json = show_json })
  return 0
end

return {
  summary = "define a user network, render each node's NR config",
  usage = "SUBCOMMAND FILE [ARGS…] [--policy-dir DIR]…",
  help = help_text(),
  run = run,
}
