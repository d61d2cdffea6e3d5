-- `zmesh genkey`: a new private key in WireGuard's base64, as `wg genkey`.
local core = require "zmesh.core"

return {
  summary = "print a new WireGuard private key (as wg genkey)",
  usage = "",
  help = [[
Prints a new Curve25519 private key in base64, like `wg genkey`; the two are
interchangeable. Redirect it to a file that only you can read:
  umask 077; zmesh genkey > private.key]],
  run = function()
    local key <close> = assert(core.key.generate())
    io.stdout:write(key:export(), "\n")
    return 0
  end,
}
