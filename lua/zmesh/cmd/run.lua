-- Run a Lua file with the library at hand: farmers' scripts, test scripts
-- inside a VM, prototypes that outgrew the REPL.
return {
  summary = "run a Lua file with zmesh.core and the library loaded",
  usage = "FILE [ARGS…]",
  help = [[
Runs the Lua 5.4 file FILE. `require "zmesh.core"` and every zmesh.* module
work as in the REPL; the arguments after FILE are in the global `arg`
(arg[0] = FILE) and in `...`. The exit status is the script's os.exit() or
0; an error prints its traceback and exits 1.]],
  run = function(args)
    local file = args[1]
    if not file then
      io.stderr:write("zmesh run: missing FILE (see zmesh run --help)\n")
      return 2
    end
    local chunk, err = loadfile(file, "t")
    if not chunk then
      io.stderr:write("zmesh run: ", require("zmesh.check").redact(err), "\n")
      return 2
    end
    local script_args = table.move(args, 2, #args, 1, {})
    _G.arg = table.move(args, 1, #args, 0, {})
    local ok, result = xpcall(chunk, debug.traceback, table.unpack(script_args))
    if not ok then
      io.stderr:write("zmesh run: ", require("zmesh.check").redact(result), "\n")
      return 1
    end
    return math.type(result) == "integer" and result or 0
  end,
}
