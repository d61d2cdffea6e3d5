local core = require "zmesh.core"

return {
  summary = "print the version",
  usage = "",
  help = "Prints the version of zmesh and of the Lua it runs on.",
  run = function()
    io.stdout:write("zmesh ", core.version, " (", _VERSION, ")\n")
    return 0
  end,
}
