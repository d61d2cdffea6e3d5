-- `zmesh net`: the network tool on the command line. Each subcommand
-- builds the parameters of the matching net.* entry point, calls it, and
-- prints its result for people (JSON where a program reads it).
local check = require "zmesh.check"
local entries = require "zmesh.net.entries"
local json = require "zmesh.json"
local net = require "zmesh.net"

local function out(...) io.stdout:write(...) end

local function show_text(s)
  out(string.format("network %s (net_id %s): %s%s\n", s.name, s.net_id, s.ip_range,
    s.ipv6_range and (" " .. s.ipv6_range) or ""))
  out("exit: ", s.exit and (s.exit .. " (sole exit)" .. (#s.exits > 1 and
    (", then " .. table.concat(s.exits, ", ", 2)) or "")) or "local breakout on every NR", "\n")
  if s.internet_targets then
    out("exit probes: ", table.concat(s.internet_targets, ", "), " (set-exit --probe)\n")
  end
  if s.routed_ipv6 then
    out("routed IPv6: ", s.routed_ipv6, s.exit and (" (enters at the exit, " .. s.exit .. ")") or
      " (no entry point: set an exit)", "\n")
  end
  if s.problem then out("problem: ", s.problem, "\n") end
  out(string.format("%-16s %-7s %-18s %-6s %s\n", "NODE", "ROLE", "SUBNET", "PORT", "AGGREGATORS / SERVES"))
  for _, n in ipairs(s.nodes) do
    local extra = n.aggregators and table.concat(n.aggregators, ", ")
      or (n.serves and n.serves > 0 and ("serves " .. n.serves)) or ""
    out(string.format("%-16s %-7s %-18s %-6s %s\n", n.node_id, n.role or "?", n.subnet,
      tostring(n.wireguard_listen_port), extra))
  end
  for _, n in ipairs(s.nodes) do
    if n.routed_ipv6_subnet then out(string.format("routed %-9s %s\n", n.node_id, n.routed_ipv6_subnet)) end
  end
  for _, a in ipairs(s.access) do
    out(string.format("device %-9s %-26s via %s\n", a.name, a.address, a.via))
  end
  for _, e in ipairs(s.expose or {}) do
    out(string.format("expose %-9s %s %d/%s\n", e.node, e.address, e.port, e.proto))
  end
end

local function print_json(v) out(json.encode(v, { pretty = true }), "\n") end

-- The options of the subcommands that talk to the fleet's NATS servers.
local NATS_OPTIONS = { ["--nats"] = "nats", ["--nkey"] = "nkey", ["--creds"] = "creds",
  ["--bucket"] = "bucket", ["--timeout"] = "timeout" }
local NATS_HELP = [[
NATS: --nats URL (repeatable, or comma-separated: any servers of the
cluster), the tool's credentials --nkey SEED_FILE or --creds FILE (else
$ZMESH_NATS_NKEY or $ZMESH_NATS_CREDS), --bucket NAME (default zmesh),
--timeout SECONDS: how long to wait for the cluster in all (default 30;
while a lost server's place is taken, JetStream answers again within
seconds).]]

local function with(options, extra)
  local out = {}
  for k, v in pairs(options) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

-- P without the NATS parameters (for an entry point that takes none).
local function nats_of(p)
  local n, rest = {}, {}
  for k, v in pairs(p) do
    if k == "nats" or k == "nkey" or k == "creds" or k == "bucket" or k == "timeout" then n[k] = v else rest[k] = v end
  end
  if n.timeout then n.timeout = tonumber(n.timeout) end
  return n, rest
end

local function mark(v) return math.type(v) == "float" and string.format("%.2f", v) or tostring(v) end

local function check_text(r)
  local function said(v) return (v == nil or v == json.null) and "none" or tostring(v) end
  if r.generation == nil or r.generation == json.null then
    out(string.format("network %s (net_id %s): never published to bucket %s\n", r.network, r.net_id, r.bucket))
  else
    out(string.format("network %s (net_id %s): generation %s published (%s), bucket %s\n", r.network, r.net_id,
      said(r.generation), said(r.state), r.bucket))
  end
  out(string.format("%-14s %-5s %-8s %-6s %-12s %-10s %s\n", "NODE", "GEN", "RESULT", "AGE", "AGGREGATOR", "EXIT",
    "PEERS (handshake age)"))
  local ids = {}
  for _, n in ipairs(r.nodes) do
    ids[#ids + 1] = n.node_id
    local peers = {}
    for _, p in ipairs(type(n.peers) == "table" and n.peers or {}) do
      peers[#peers + 1] = string.format("%s %s", tostring(p.node_id), p.handshake_age ~= json.null
        and (tostring(p.handshake_age) .. "s") or "never")
    end
    local function v(x) return (x == nil or x == json.null) and "-" or tostring(x) end
    out(string.format("%-14s %-5s %-8s %-6s %-12s %-10s %s\n", n.node_id, v(n.generation),
      n.stale and "STALE" or v(n.result),
      n.age and n.age ~= json.null and (tostring(n.age) .. "s") or "-", v(n.aggregator), v(n.exit),
      table.concat(peers, ", ")))
  end
  local cell = {}
  for _, c in ipairs(r.pairs) do
    local text
    if c.reachable == true then
      text = (c.rtt_ms and (mark(c.rtt_ms) .. "ms") or "ok") .. " " .. (c.path and c.path ~= json.null and
        tostring(c.path) or "")
    elseif c.reachable == false then
      text = "UNREACHABLE"
    else
      text = "?"
    end
    cell[c.from .. " " .. c.to] = text
  end
  out("\nreachability (row to column: round trip, path):\n")
  local w = 12
  for _, c in ipairs(r.pairs) do w = math.max(w, #cell[c.from .. " " .. c.to] + 1) end
  local head = { string.format("%-14s", "") }
  for _, id in ipairs(ids) do head[#head + 1] = string.format("%-" .. w .. "s", id) end
  out(table.concat(head), "\n")
  for _, a in ipairs(ids) do
    local row = { string.format("%-14s", a) }
    for _, b in ipairs(ids) do row[#row + 1] = string.format("%-" .. w .. "s", a == b and "-" or cell[a .. " " .. b]) end
    out(table.concat(row), "\n")
  end
  out(string.format("\n%d of %d pairs reachable\n", r.reachable, r.total))
  for _, p in ipairs(r.problems) do out("problem: ", p, "\n") end
end

-- name, positional parameters, options (flag → param, and whether it
-- takes a value), help text, and how to print the result.
local subcommands = {
  { name = "new", summary = "create a network file: name, IPv4 range, optional IPv6 prefixes", args = { "file", "name", "ip_range" },
    options = { ["--ipv6"] = "ipv6_range", ["--routed-ipv6"] = "routed_ipv6", ["--id"] = "net_id" },
    usage = "FILE NAME IP_RANGE [--ipv6 PREFIX] [--routed-ipv6 PREFIX] [--id NET_ID]",
    help = [[Creates the network file FILE for a new network NAME with the private
IPv4 range IP_RANGE (e.g. 10.1.0.0/16; 100.64.0.0/10 is Zero-Mesh's own),
and optionally an IPv6 prefix (/64 or larger) for the NRs' /64s inside
the mesh (--ipv6, unique local: fd00::/8), and a routed IPv6 prefix
(--routed-ipv6, global: one a provider routes to the exit node): each NR
gets a /64 of each, and its containers an address in each. The routed
prefix enters the network at its sole exit (set-exit), so the network
needs one; containers reach the IPv6 Internet with their own global
addresses through it, without NAT66, and nothing comes in unless exposed
(expose). NET_ID (1-12 of [a-z0-9]) names the kernel objects on every
node; a random one is chosen when absent. Refuses to overwrite an
existing file.]],
    print = function(r) out("created network ", r.name, " (net_id ", r.net_id, ")\n") end },
  { name = "add-node", summary = "add a node from its facts (optional fixed subnet and port)", args = { "file", "facts_file" },
    options = with({ ["--subnet"] = "subnet", ["--ipv6-subnet"] = "ipv6_subnet", ["--port"] = "port",
      ["--update"] = true }, NATS_OPTIONS), lists = { nats = true },
    usage = "FILE FACTS.json|- [--subnet CIDR] [--ipv6-subnet CIDR] [--port N] [--update] | FILE --nats URL… NODE_ID",
    -- --nats: the positional is a node id, its facts come from the bucket.
    call = function(p)
      local n, rest = nats_of(p)
      if n.nats then
        n.file, n.node = p.file, p.facts_file
        rest.facts, rest.facts_file = entries["nats-facts"](n), nil
      elseif next(n) then
        error("--nkey, --creds, --bucket and --timeout go with --nats", 0)
      end
      return entries["add-node"](rest)
    end,
    help = [[Adds a node to the network from its facts (what `zmesh node facts` prints
on that node; - reads standard input). The NR gets a /24 (and /64) from the
subnet policy unless fixed with --subnet/--ipv6-subnet, a listen port from
the node's range unless fixed with --port, and a new key pair: the private
key is sealed to the node's public key and never shown. --update refreshes
the facts of a node already in the network; it keeps its subnet and port,
and gets a new key pair when its node key changed. The file records each
hidden NR's aggregators, so that a new node never moves them.
With --nats, the second argument is a node id and its facts are the ones
its daemon published in the fleet's bucket (facts.NODE_ID).

]] .. NATS_HELP,
    print = function(r)
      out(string.format("%s %s: subnet %s%s%s, port %d\n", r.changes and "updated" or "added", r.node_id, r.subnet,
        r.ipv6_subnet and (" " .. r.ipv6_subnet) or "", r.routed_ipv6_subnet and (" " .. r.routed_ipv6_subnet) or "",
        r.wireguard_listen_port))
      if r.changes then
        for _, c in ipairs(r.changes) do out("changed: ", c, "\n") end
        if #r.changes == 0 then
          out("its facts are unchanged\n")
        else
          out("render again and apply (or publish) every node's config: the peers of ", r.node_id,
            " dial it at its new address\n")
        end
      end
    end },
  { name = "remove-node", summary = "remove a node; re-rendering moves what it served", args = { "file", "node" },
    usage = "FILE NODE",
    help = [[Removes NODE's NR from the network. Render again and re-apply everywhere:
hidden NRs it served move to their next aggregator (the warm backup), and
get a new backup; other hidden NRs keep theirs. Removing the sole exit
hands it to its first fallback, or, without one, returns the network to
local breakout; devices peering with NODE are removed (add them again).
A removal that leaves the network unrenderable (its last public node, or
the exit a routed prefix enters by) is done, with a note saying so.]],
    print = function(r)
      out("removed ", r.removed, "\n")
      for _, n in ipairs(r.notes) do out("note: ", n, "\n") end
    end },
  { name = "set-exit", summary = "name the network's Internet exit and its fallbacks, or none",
    args = { "file", "nodes" }, rest = true,
    options = { ["--probe"] = "probe" }, lists = { probe = true },
    usage = "FILE NODE [NODE…] [--probe ADDRESS]… | FILE none",
    help = [[Makes the first NODE's NR the network's sole Internet exit: every other NR
sends 0.0.0.0/0 and ::/0 through the mesh to it, and it masquerades the
network's traffic out of its node. Further NODEs are exit candidates in
order: when the exit in use stops carrying traffic to the Internet (each
candidate pings the network's --probe addresses, else the failover
policy's internet targets, through its own uplink), every NR's daemon
moves to the next candidate that does, and back per the policy. "none"
returns to local breakout (and forgets the --probe addresses). --probe:
1 to 8 distinct IPv4 addresses on the Internet (not loopback, multicast
or inside the network's ranges); given once, they stay for later
set-exit calls until new ones are given.]],
    params = function(p)
      p.node = p.nodes
      p.nodes = nil
      if #p.node == 1 and p.node[1] == "none" then p.node = nil end
    end,
    print = function(r)
      if r.exit == json.null then
        out("no sole exit: local breakout\n")
      else
        out("sole exit: ", r.exit, #r.exits > 1 and (" (then " .. table.concat(r.exits, ", ", 2) .. ")") or "", "\n")
      end
      for _, note in ipairs(r.notes or {}) do out("note: ", note, "\n") end
    end },
  { name = "set-routed-ipv6", summary = "give the network a routed IPv6 prefix (a /64 per NR), or none",
    args = { "file", "prefix" },
    usage = "FILE PREFIX | FILE none",
    help = [[Gives the network the global IPv6 prefix PREFIX that a provider routes to
its exit node (e.g. a /48), or removes it (none). Every NR gets a /64 of
it, at the index of its /24 where free, and its containers an address in
it: the low 64 bits of their unique-local IPv6 address, else ::N for
IPv4 address a.b.c.N (10.1.4.10 → …:4::10). The exit NR (set-exit) is the
entry point: its node's ndmz routes the prefix into it, and it routes
each /64 through the mesh to its NR; IPv6 to the Internet leaves there,
without NAT66. The exit and its fallbacks must be public nodes with
global IPv6; when the exit moves, the provider's route must follow.
Replacing the prefix renumbers every NR and closes its exposures.
Render again and apply on every node.]],
    params = function(p) if p.prefix == "none" then p.prefix = nil end end,
    print = function(r)
      if r.routed_ipv6 == json.null then
        out("no routed IPv6 prefix\n")
      else
        out("routed IPv6 prefix ", r.routed_ipv6, "\n")
        for _, n in ipairs(r.nodes) do out(string.format("  %-14s %s\n", n.node_id, n.routed_ipv6_subnet)) end
      end
      for _, n in ipairs(r.notes) do out("note: ", n, "\n") end
    end },
  { name = "expose", summary = "open a port of one container to the Internet (routed IPv6)",
    args = { "file", "node", "address", "service" },
    usage = "FILE NODE ADDRESS PORT/PROTO",
    call = function(p)
      p.port, p.service = p.service, nil
      return entries.expose(p)
    end,
    help = [[Opens PORT/PROTO (e.g. 8080/tcp or 53/udp) of ADDRESS, a container's address
in NODE's routed IPv6 /64, to the Internet. The default is the diode
(replies only); this opens exactly that port of that address, at the
entry NR (the exit and its fallbacks, from their uplink) and at NODE's NR
(from the tunnel). Render again and apply on NODE and the exit candidates.]],
    print = function(r) out(string.format("exposed %s %d/%s on %s\n", r.address, r.port, r.proto, r.node)) end },
  { name = "unexpose", summary = "close what expose opened", args = { "file", "node", "address", "service" },
    usage = "FILE NODE ADDRESS PORT/PROTO",
    call = function(p)
      p.port, p.service = p.service, nil
      return entries.unexpose(p)
    end,
    help = [[Closes PORT/PROTO of ADDRESS on NODE, opened with expose. Render again and
apply on NODE and the exit candidates.]],
    print = function(r) out(string.format("closed %s %d/%s on %s\n", r.address, r.port, r.proto, r.node)) end },
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
  { name = "graph", summary = "print the topology as Graphviz DOT (--nats, --status: the live edges)", args = { "file" },
    options = with(NATS_OPTIONS, { ["--status"] = "status" }), lists = { nats = true, status = true },
    usage = "FILE [--nats URL… | --status CHECK.json…]",
    help = [[Prints the topology as Graphviz DOT (e.g. | dot -Tsvg > net.svg): public
NRs as boxes, aggregators with a double border, hidden NRs dashed, bold
links to primary aggregators, dotted to backups, the exit in red.
With --nats, the edges are the live ones instead, from the status the
nodes published: one per pair of WireGuard peers, green with the age of
the last handshake and the bytes received and sent, red and dashed when
there was no handshake for 180 s. With --status, the live edges come from
`zmesh node check --json` reports saved from the nodes: bold where a
peer relays traffic for other NRs (the aggregator or exit in use), solid
for a peer's own traffic, dotted for a standby aggregator, red when the
peer did not answer; labelled with the handshake age and the bytes.

]] .. NATS_HELP,
    call = function(p)
      local n, rest = nats_of(p)
      if n.nats then
        n.file, n.policy_dir = p.file, p.policy_dir
        return entries["graph-live"](n)
      end
      return entries.graph(rest)
    end,
    print = function(r) out(r.dot) end },
  { name = "publish", summary = "write every node's NR config to the fleet's NATS bucket", args = { "file" },
    options = with(NATS_OPTIONS, { ["--force"] = true, ["--replicas"] = "replicas" }), lists = { nats = true },
    usage = "FILE --nats URL… [--nkey SEED] [--force] [--replicas N]",
    help = [[Renders every node's NR config and writes it to the fleet's JetStream
key-value bucket, key nr.NODE_ID.NET_ID, with the network's next
generation in it; the keys of nodes no longer in the network get a
delete marker. Each node's daemon (node config `control`) applies its
own keys as they change. The bucket is made when missing (three
replicas, or one on a single server; --replicas N).
Compare-and-set on the network key (net.NET_ID): when someone else
published since FILE was last published, or publishes at the same time,
this publish stops with a conflict (exit status 1) and writes nothing of
its own; --force publishes over a newer generation. FILE records the
generation it was published at.

]] .. NATS_HELP,
    call = function(p)
      if p.timeout then p.timeout = tonumber(p.timeout) end
      if p.replicas then p.replicas = math.tointeger(tonumber(p.replicas)) end
      return entries.publish(p)
    end,
    print = function(r)
      out(string.format("published network %s generation %d: %d NR configs written, %d removed (bucket %s%s)\n",
        r.network, r.generation, r.written, r.deleted, r.bucket,
        r.bucket_made and string.format(", made with %d replicas", r.replicas) or ""))
    end },
  { name = "check", summary = "the fleet-wide matrix of every NR pair, from the published status", args = { "file" },
    options = with(NATS_OPTIONS, { ["--json"] = true }), lists = { nats = true },
    usage = "FILE --nats URL… [--json]",
    help = [[Reads the status every node's daemon published (status.NODE_ID.NET_ID) and
shows, per node, the generation it applied, the result of its last
apply, its WireGuard peers with handshake ages, the aggregator and exit
in use; then the matrix of every NR pair: reachable, round trip and path
(direct, or via which peer), as measured by the nodes. A node whose
status was not refreshed for 3 of its status intervals is STALE: its
measurements are not counted. Exit status 0
when every node applied the published generation and every pair is
reachable, 1 otherwise (the problems listed).

]] .. NATS_HELP,
    call = function(p)
      if p.timeout then p.timeout = tonumber(p.timeout) end
      return entries.check(p)
    end,
    print = function(r, p)
      if p.json then print_json(r) else check_text(r) end
      return r.ok and 0 or 1
    end },
  { name = "nats-config", summary = "NATS server configs and node nkeys for a fleet's cluster", args = { "files" },
    rest = true,
    options = { ["--server"] = "servers", ["--out"] = "out", ["--node"] = "nodes", ["--bucket"] = "bucket",
      ["--store-dir"] = "store_dir", ["--cluster"] = "cluster" },
    lists = { servers = true, nodes = true },
    usage = "FILE… --server NAME=HOST[:PORT[:CLUSTER_PORT]]… --out DIR [--node ID]… [--bucket NAME] [--store-dir DIR]",
    help = [[Writes the configuration of every NATS server of the fleet's cluster into
DIR (DIR/NAME.conf, mode 0600), from the network files: JetStream with
file storage (STORE_DIR/NAME, default /var/lib/nats/NAME), cluster routes
between the servers (authenticated with DIR/route.secret), and one
account with one nkey user per node of the networks (and per --node ID,
for nodes about to join) plus one for this tool. A node's user may read
only its own nr.NODE_ID.> keys and write only its own status and facts
keys. The nkey seeds are made once in DIR/nkeys/ (mode 0600):
NODE_ID.nk goes to that node (node config control.nkey), admin.nk is the
tool's (--nkey). Running it again keeps existing seeds and the route
secret, so servers reload it (SIGHUP) without losing anyone.
Run each server with `nats-server -c DIR/NAME.conf`; three servers keep
the bucket (three replicas) available when one is lost.]],
    params = function(p)
      local files = p.files or {}
      p.file, p.files = files[1], table.move(files, 2, #files, 1, {})
      if #p.files == 0 then p.files = nil end
    end,
    print = function(r)
      for _, f in ipairs(r.files) do out("wrote ", f, "\n") end
      for _, f in ipairs(r.seeds_made) do out("made nkey seed ", f, "\n") end
      out(string.format("%d node users; servers: %s; the tool's seed: %s\n", #r.nodes, table.concat(r.urls, ","),
        r.admin_seed))
    end },
}

local function find(name)
  for _, s in ipairs(subcommands) do
    if s.name == name then return s end
  end
  return nil
end

local function usage_error(msg)
  io.stderr:write("zmesh net: ", check.redact(msg), "\n")
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
        if s.lists and s.lists[param] then
          p[param] = p[param] or {}
          table.insert(p[param], args[i + 1])
        else
          p[param] = args[i + 1]
        end
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
  -- s.rest: the last positional takes one or more words, as a list.
  if #pos ~= #want and not (s.rest and #pos > #want) then
    return nil, string.format("%s takes %s (see zmesh net %s --help)", s.name, s.usage, s.name)
  end
  for k, name in ipairs(want) do p[name] = pos[k] end
  if s.rest then p[want[#want]] = table.move(pos, #want, #pos, 1, {}) end
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
  local width = 0
  for _, s in ipairs(subcommands) do width = math.max(width, #s.name) end
  for _, s in ipairs(subcommands) do
    lines[#lines + 1] = string.format("  %-" .. width .. "s %s", s.name, s.summary)
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
    if facts == nil then
      -- Bad facts are the input's fault, as from a file: status 1.
      io.stderr:write("zmesh net ", s.name, ": facts_file: ", check.redact(perr), "\n")
      return 1
    end
    p.facts, p.facts_file = facts, nil
  end
  if p.timeout and not tonumber(p.timeout) then return usage_error("--timeout needs a number of seconds") end
  if p.port then
    p.port = tostring(p.port):match("^%d+$") and tonumber(p.port)
    if not p.port then return usage_error("--port needs a number (decimal)") end
  end
  local show_json = p.json
  p.json = nil
  local ok, result = pcall(s.call or entries[s.name], p)
  if not ok then
    io.stderr:write("zmesh net ", s.name, ": ", check.redact(result), "\n")
    return 1
  end
  local code = s.print(result, { json = show_json })
  return math.type(code) == "integer" and code or 0
end

return {
  summary = "define a user network, render each node's NR config",
  usage = "SUBCOMMAND FILE [ARGS…] [--policy-dir DIR]…",
  help = help_text(),
  run = run,
}
