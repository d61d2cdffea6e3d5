-- `zmesh pubkey`: the public key of the private key on standard input.
local core = require "zmesh.core"

return {
  summary = "print the public key of the private key on stdin (as wg pubkey)",
  usage = "< private.key",
  help = [[
Reads a base64 private key (from `wg genkey` or `zmesh genkey`) on standard
input and prints its public key, like `wg pubkey`.]],
  run = function()
    -- A key is 44 characters: anything much longer is not one.
    local text = (io.stdin:read(4096) or ""):gsub("%s+$", "")
    local ok, key = pcall(core.key.private, text)
    if not ok then
      -- The message never repeats the input: it may be a secret.
      io.stderr:write("zmesh pubkey: standard input is not a private key\n")
      return 1
    end
    io.stdout:write(key:public(), "\n")
    key:close()
    return 0
  end,
}
