local client = require "zmesh.daemon.client"
local entry = require "zmesh.entry"
local json = require "zmesh.json"

local function fail(status, msg)
  io.stderr:write("zmesh call: ", require("zmesh.check").redact(msg), "\n")
  return status
end

return {
  summary = "call a named Lua entry point with JSON, print its JSON result",
  usage = "ENTRY [JSON | -] [--direct | --daemon]\n       zmesh call --list",
  help = [[
Calls the entry point ENTRY (area.verb, e.g. nr.apply) with the JSON object
given as the second argument, or read from standard input when it is "-"
(no argument: {}). The result is printed as JSON on standard output.

Node-side entry points (node.*, nr.*, container.*) go through the node's
daemon when its socket answers, so that it stays the only writer; else
they run here. --direct runs here in any case, --daemon only through the
daemon.

Exit status: 0 on success; 1 when the entry point fails (its message on
standard error); 2 for an unknown entry point or JSON that does not parse.
`zmesh call --list` prints every entry point.]],
  run = function(args)
    local mode = client.take_mode(args)
    if args[1] == "--list" then
      for _, e in ipairs(entry.list()) do
        io.stdout:write(string.format("%-22s %s\n", e.name, e.summary))
      end
      return 0
    end
    local name, text = args[1], args[2]
    if not name then return fail(2, "missing entry point name (see zmesh call --help)") end
    if #args > 2 then return fail(2, "too many arguments") end
    local fn, err = entry.resolve(name)
    if not fn then return fail(2, err) end
    local params = {}
    if text then
      local perr
      if text == "-" then
        params, perr = json.read(io.stdin, "standard input")
      else
        params, perr = json.decode(text)
      end
      if params == nil then return fail(2, perr) end
      if type(params) ~= "table" or json.kind(params) ~= "object" then
        return fail(2, "invalid JSON: expected an object")
      end
    end
    local ok, result = client.call(name, params, mode)
    if not ok then return fail(1, name .. ": " .. result) end
    io.stdout:write(json.encode(result == nil and json.object() or result, { pretty = true }), "\n")
    return 0
  end,
}
