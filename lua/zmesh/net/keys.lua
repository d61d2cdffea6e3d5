-- WireGuard keys for NRs and devices, through zmesh.core: a private key
-- is made in C and leaves it only sealed to its node's public key (or, for
-- an external device, once, in the wg-quick config printed for it).
local core = require "zmesh.core"

local keys = {}

-- base64 of a 32-byte key sealed with crypto_box_seal: 32 + 48 bytes.
keys.SEALED_LEN = 108

function keys.valid_public(s)
  return type(s) == "string" and core.key.valid_public(s)
end

function keys.valid_sealed(s)
  return type(s) == "string" and #s == keys.SEALED_LEN
    and s:match("^[A-Za-z0-9+/]+=*$") ~= nil
end

local function generate()
  local k, err = core.key.generate()
  if not k then error("key: cannot generate a key: " .. tostring(err), 0) end
  return k
end

-- A fresh NR key pair: its public key, and its private key sealed to
-- NODE_PUBLIC (the node's own key, from its facts).
function keys.for_node(node_public)
  local k <close> = generate()
  local sealed, err = k:seal(node_public)
  if not sealed then error("key: cannot seal to the node's key: " .. tostring(err), 0) end
  return k:public(), sealed
end

-- A fresh key for an external device: its public key and the private
-- key in base64, which the caller prints once and never stores.
function keys.for_device()
  local k <close> = generate()
  return k:public(), k:export()
end

return keys
