-- The zmesh command line: a table of commands, each a module with
-- summary, usage, help and run(args) → exit status.
local cli = {}

local commands = {
  { "version", "zmesh.cmd.version" },
  { "call", "zmesh.cmd.call" },
  { "repl", "zmesh.cmd.repl" },
  { "run", "zmesh.cmd.run" },
  { "genkey", "zmesh.cmd.genkey" },
  { "pubkey", "zmesh.cmd.pubkey" },
  { "node", "zmesh.cmd.node" },
  { "daemon", "zmesh.cmd.daemon" },
  { "net", "zmesh.cmd.net" },
  { "demo", "zmesh.cmd.demo" },
}

local function load_command(name)
  for _, c in ipairs(commands) do
    if c[1] == name then
      local ok, mod = pcall(require, c[2])
      if ok then return mod end
      if not tostring(mod):find("module '" .. c[2] .. "' not found", 1, true) then
        error(mod, 0)
      end
    end
  end
  return nil
end

local function usage(out)
  out:write("usage: zmesh COMMAND [ARGS…]\n\n",
    "Zero-Mesh: private encrypted networks across nodes.\n\ncommands:\n")
  for _, c in ipairs(commands) do
    local mod = load_command(c[1])
    if mod then out:write(string.format("  %-8s %s\n", c[1], mod.summary)) end
  end
  out:write("\n`zmesh COMMAND --help` tells more about one command.\n")
end

function cli.main(args)
  local name = args[1]
  if name == nil then
    usage(io.stderr)
    return 2
  end
  if name == "--help" or name == "-h" or name == "help" then
    usage(io.stdout)
    return 0
  end
  if name == "--version" then name = "version" end
  local cmd = load_command(name)
  if not cmd then
    io.stderr:write("zmesh: unknown command '", require("zmesh.check").redact(name), "' (see zmesh --help)\n")
    return 2
  end
  local rest = table.move(args, 2, #args, 1, {})
  if rest[1] == "--help" or rest[1] == "-h" then
    io.stdout:write("usage: zmesh ", name, " ", cmd.usage or "", "\n\n", cmd.help or cmd.summary, "\n")
    return 0
  end
  return cmd.run(rest) or 0
end

return cli
