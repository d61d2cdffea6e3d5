-- `zmesh node …`: the node side from a shell, over the same entry points
-- that provisioning calls.
local check = require "zmesh.check"
local client = require "zmesh.daemon.client"
local json = require "zmesh.json"

local subcommands = {
  { "start", "node.start", "bring up the ndmz; make the node key on first start" },
  { "stop", "node.stop", "remove every NR and the ndmz (--dry-run: the plan only)" },
  { "facts", "node.facts", "print what this node publishes (id, key, addresses, ports)" },
  { "status", "node.status", "the ndmz and the NRs of this node" },
  { "plan", "node.plan", "the changes `start` would make" },
  { "apply", "nr.apply", "apply the NR config in FILE (- for standard input)" },
  { "diff", "nr.plan", "the changes `apply FILE` would make, changing nothing" },
  { "remove", "nr.remove", "remove the NR NET_ID (--dry-run: the plan only)" },
  { "list", "nr.list", "the NRs on this node" },
  { "check", "node.check", "reach every other NR of each network: RTT and path (--json)" },
  { "repair", "nr.check", "restart NRs whose WireGuard died; remove half-made ones" },
  { "converge", "node.converge", "converge the ndmz and every stored NR and container" },
}

-- What each subcommand takes besides the common options.
local ARGS = {
  stop = " [--dry-run]", apply = " FILE", diff = " FILE", remove = " NET_ID [--dry-run]",
  check = " [NET_ID] [--json]",
}

local function help()
  local lines = { [[
Runs this node's side of Zero-Mesh. The node config is read from --config
PATH, else $ZMESH_NODE_CONFIG, else /etc/zmesh/node.json. Results print as
JSON; errors as one line on standard error (exit status 1; 2 for a
command line it cannot read). Every
subcommand goes through the node's daemon (`zmesh daemon`) when its socket
answers, else runs here; --direct runs here in any case, --daemon only
through the daemon.

subcommands:]] }
  for _, s in ipairs(subcommands) do
    lines[#lines + 1] = string.format("  %-9s %s", s[1], s[3])
  end
  return table.concat(lines, "\n")
end

-- The NR config in PATH or on standard input ("-"), size-capped; a
-- directory or a device without end gets a message, not a Lua error.
local function read_file(path)
  if path == "-" then return json.read(io.stdin, "standard input") end
  return json.read_file(path)
end

return {
  summary = "run the node side: ndmz, NRs (start, apply, facts, …)",
  usage = "SUBCOMMAND [ARG] [--config PATH] [--dry-run] [--direct | --daemon]",
  help = help(),
  run = function(args)
    local mode = client.take_mode(args)
    local sub, arg, config, dry_run, as_json, want_help
    local i = 1
    while args[i] do
      if args[i] == "--help" or args[i] == "-h" then
        -- Anywhere on the line: `zmesh node stop --help` must not stop.
        want_help, i = true, i + 1
      elseif args[i] == "--config" then
        config = args[i + 1]
        if not config then
          io.stderr:write("zmesh node: --config needs a value\n")
          return 2
        end
        i = i + 2
      elseif args[i] == "--dry-run" then
        dry_run, i = true, i + 1
      elseif args[i] == "--json" then
        as_json, i = true, i + 1
      elseif args[i]:match("^%-.") then
        io.stderr:write("zmesh node: unknown option ", args[i], " (see zmesh node --help)\n")
        return 2
      elseif not sub then sub, i = args[i], i + 1
      elseif not arg then arg, i = args[i], i + 1
      else
        io.stderr:write("zmesh node: unexpected argument '", check.redact(args[i]), "'\n")
        return 2
      end
    end
    local target, about
    for _, s in ipairs(subcommands) do if s[1] == sub then target, about = s[2], s[3] end end
    if want_help then
      if target then
        io.stdout:write(string.format("usage: zmesh node %s%s [--config PATH] [--direct | --daemon]\n\n%s\n"
          .. "(the entry point %s; zmesh node --help lists every subcommand)\n", sub, ARGS[sub] or "", about, target))
      else
        io.stdout:write("usage: zmesh node SUBCOMMAND [ARG] [--config PATH] [--dry-run] [--direct | --daemon]\n\n",
          help(), "\n")
      end
      return 0
    end
    if config then require("zmesh.node.context").use_config(config) end
    if not sub then
      io.stderr:write("zmesh node: missing subcommand (see zmesh node --help)\n")
      return 2
    end
    if not target then
      io.stderr:write("zmesh node: unknown subcommand '", check.redact(sub), "' (see zmesh node --help)\n")
      return 2
    end
    local params = {}
    if sub == "apply" or sub == "diff" then
      if not arg then
        io.stderr:write("zmesh node ", sub, ": missing FILE\n")
        return 2
      end
      local err
      params, err = read_file(arg)
      if not params then
        -- The file is at fault, not the command line: status 1.
        io.stderr:write("zmesh node ", sub, ": ", check.redact(err), "\n")
        return 1
      end
    elseif sub == "remove" and not arg then
      io.stderr:write("zmesh node remove: missing NET_ID\n")
      return 2
    elseif sub == "remove" or (sub == "check" and arg) then
      params = { net_id = arg }
    end
    if dry_run then
      if sub ~= "remove" and sub ~= "stop" then
        io.stderr:write("zmesh node: --dry-run is for remove and stop (diff and plan show the others)\n")
        return 2
      end
      params.dry_run = true
    end
    local ok, result = client.call(target, params, mode)
    if not ok then
      io.stderr:write("zmesh node ", sub, ": ", check.redact(result), "\n")
      return 1
    end
    if sub == "check" then
      io.stdout:write(as_json and json.encode(result, { pretty = true }) or require("zmesh.node.check").text(result),
        "\n")
      -- For scripts and monitors: 1 when some NR does not reach another.
      local list = type(result) == "table" and result or {}
      -- An NR asked for by name and not there, or one that could not be
      -- checked, is no "all reachable".
      if arg and #list == 0 then return 1 end
      for _, nr in ipairs(list) do
        if nr.error then return 1 end
        for _, p in pairs(nr.peers or {}) do
          if not p.reachable then return 1 end
        end
      end
      return 0
    end
    io.stdout:write(json.encode(result, { pretty = true }), "\n")
    return 0
  end,
}
