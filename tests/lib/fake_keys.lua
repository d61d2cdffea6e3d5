-- A fake of zmesh.core's key area for unit tests: deterministic keys from
-- a counter, and "sealed boxes" that only the right node key opens, so
-- tests can check that a render's sealed key belongs to the NR's public
-- key. Not cryptography: never use outside tests.
--
--   local fake = require "fake_keys"
--   fake.install()            -- package.loaded["zmesh.core"] = fake core
--   local k = fake.node_key() -- a node's key; k:public() for its facts
local fake = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function fake.b64encode(bytes)
  local out = {}
  for i = 1, #bytes, 3 do
    local a, b, c = bytes:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local chunk = {}
    for k = 1, 4 do
      local idx = (n >> (6 * (4 - k))) & 63
      chunk[k] = B64:sub(idx + 1, idx + 1)
    end
    if not b then chunk[3], chunk[4] = "=", "=" elseif not c then chunk[4] = "=" end
    out[#out + 1] = table.concat(chunk)
  end
  return table.concat(out)
end

function fake.b64decode(s)
  if type(s) ~= "string" or #s % 4 ~= 0 or not s:match("^[A-Za-z0-9+/]*=?=?$") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for k = 0, 3 do
      local ch = s:sub(i + k, i + k)
      if ch == "=" then pad = pad + 1 n = n << 6
      else n = (n << 6) | (B64:find(ch, 1, true) - 1) end
    end
    local bytes = string.char((n >> 16) & 255, (n >> 8) & 255, n & 255)
    out[#out + 1] = bytes:sub(1, 3 - pad)
  end
  return table.concat(out)
end

local counter = 0
local live = 0

-- A public key is a fixed byte-wise function of the secret.
local function public_of(secret)
  return (secret:gsub(".", function(c) return string.char((c:byte() * 7 + 13) % 256) end))
end

local function xor(a, b)
  local out = {}
  for i = 1, #a do out[i] = string.char(a:byte(i) ~ b:byte((i - 1) % #b + 1)) end
  return table.concat(out)
end

local methods = {}
local mt = { __name = "zmesh.privkey", __index = methods }

local function new_key(secret)
  live = live + 1
  return setmetatable({ secret = secret }, mt)
end

function methods.public(k)
  assert(k.secret, "private key is closed")
  return fake.b64encode(public_of(k.secret))
end

function methods.export(k)
  assert(k.secret, "private key is closed")
  return fake.b64encode(k.secret)
end

-- 32 bytes of secret XOR recipient, then 48 bytes naming the recipient.
function methods.seal(k, recipient)
  local raw = fake.b64decode(recipient)
  if not raw or #raw ~= 32 then error("bad argument #1 to 'seal' (malformed public key)", 2) end
  local tag = xor(string.rep("sealed-to-", 5):sub(1, 48), raw)
  return fake.b64encode(xor(k.secret, raw) .. tag)
end

function methods.close(k)
  if k.secret then live = live - 1 end
  k.secret = nil
end
mt.__close = methods.close
mt.__gc = methods.close
mt.__tostring = function(k) return "zmesh.privkey (fake)" end

fake.key = {}

function fake.key.generate()
  counter = counter + 1
  local secret = string.pack(">I4", counter) .. string.rep("k", 28)
  return new_key(secret)
end

function fake.key.valid_public(s)
  if type(s) ~= "string" or #s ~= 44 or s:sub(-1) ~= "=" then return false end
  local raw = fake.b64decode(s)
  return raw ~= nil and #raw == 32
end

-- open_sealed(b64, node_key) → key | nil, "EBADMSG: …", "EBADMSG"
function fake.key.open_sealed(b64, node_key)
  local raw = fake.b64decode(b64)
  local me = public_of(node_key.secret)
  if not raw or #raw ~= 80 or raw:sub(33) ~= xor(string.rep("sealed-to-", 5):sub(1, 48), me) then
    return nil, "EBADMSG: not sealed to this key", "EBADMSG"
  end
  return new_key(xor(raw:sub(1, 32), me))
end

-- Keys still open (generated or opened, not closed): tests check that
-- the tool closes what it makes.
function fake.live() return live end

-- A node's own key, as `zmesh node facts` would hold it.
function fake.node_key() return fake.key.generate() end

-- Put the fake in place of zmesh.core and forget modules that captured
-- the real one.
function fake.install()
  -- The nftables vocabulary is data of the real core (zmesh.firewall reads it).
  local nft = (package.loaded["zmesh.core"] or require("zmesh.core")).nft
  package.loaded["zmesh.core"] = { key = fake.key, version = "fake", nft = nft }
  for name in pairs(package.loaded) do
    if name == "zmesh.net" or name:match("^zmesh%.net%.") then package.loaded[name] = nil end
  end
  return fake
end

return fake
