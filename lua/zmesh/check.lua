-- Input checks that fail with one clear message naming the field and the
-- value, e.g. "subnet '10.1.1.0/33': invalid prefix length". They raise
-- (error level 0); entry points let the message through unchanged.
--
-- Fields are named by their full path ("peers[3].persistent_keepalive"):
-- the table argument of the field checks may be check.at(t, "peers[3]"),
-- which looks fields up in T and names them under that path.
local ip = require "zmesh.ip"
local json = require "zmesh.json"

local check = {}

-- Values longer than this are cut in messages (a value may be 1 MB).
local SHOW_MAX = 64

local escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\" }

local function escape(s, high)
  return (s:gsub(high and "[%c\\\128-\255]" or "[%c\\]", function(c)
    return escapes[c] or string.format("\\x%02x", c:byte())
  end))
end

-- A WireGuard key anywhere in a string: 43 base64 characters (not part of
-- a longer run) and "=". Private and public keys look alike, so no value
-- of that shape is ever echoed.
local KEY = "%f[%w+/]" .. string.rep("[%w+/]", 43) .. "="

local function show_string(s)
  if s:find(KEY) then
    return #s == 44 and "(a key, not shown)" or "(a value holding a key, not shown)"
  end
  -- Cut at a character boundary when the text is UTF-8; else escape
  -- every byte above 127 too, so the message stays valid text.
  local utf8_ok = utf8.len(s) ~= nil
  local cut = #s
  if utf8_ok then
    cut = (utf8.offset(s, SHOW_MAX + 1) or #s + 1) - 1
  elseif #s > SHOW_MAX then
    cut = SHOW_MAX
  end
  local text = "'" .. escape(s:sub(1, cut), not utf8_ok) .. "'"
  if cut < #s then text = text:sub(1, -2) .. "…' (" .. #s .. " bytes)" end
  return text
end

-- VALUE as a message shows it: strings quoted, escaped and cut; JSON's
-- null as null; numbers as JSON would write them; tables as short JSON.
function check.show(v)
  local tv = type(v)
  if tv == "string" then return show_string(v) end
  if v == json.null then return "null" end
  if tv == "number" then
    if v ~= v then return "NaN" end
    if v == math.huge then return "Infinity" end
    if v == -math.huge then return "-Infinity" end
    return tostring(v)
  end
  if tv == "boolean" then return tostring(v) end
  if tv == "table" then
    local ok, text = pcall(json.encode, v)
    if not ok then return json.kind(v) == "array" and "(an array)" or "(an object)" end
    if text:find(KEY) then return "(a value holding a key, not shown)" end
    if #text > SHOW_MAX then text = text:sub(1, SHOW_MAX) .. "… (" .. #text .. " bytes of JSON)" end
    return escape(text, utf8.len(text) == nil)
  end
  return "(a " .. tv .. ")"
end

local show = check.show

-- TEXT (a message) with every key-shaped run replaced: for what the
-- commands print as they got it (a file name, an argument).
function check.redact(text)
  return (tostring(text):gsub(KEY, "(a key, not shown)"))
end

-- The last failure raised here: {kind, field, message}. Messages stay
-- plain strings everywhere; the daemon reads this to answer 400, 404 or
-- 409 with the field (kind "input", "not_found" or "conflict").
check.last = nil

local function raise(kind, field, value, why)
  local msg = value == nil and string.format("%s: %s", field, why)
    or string.format("%s %s: %s", field, show(value), why)
  check.last = { kind = kind, field = field, message = msg }
  error(msg, 0)
end

function check.fail(field, value, why) raise("input", field, value, why) end
-- Valid, but it clashes with what the node has (a listen port in use).
function check.conflict(field, value, why) raise("conflict", field, value, why) end
-- It names something this node does not have.
function check.not_found(field, value, why) raise("not_found", field, value, why) end

-- What ERR (a message an entry point raised) was, when check raised it:
-- {kind, field} or nil (a system failure). Wrapped messages count (a
-- caller may prefix its context).
function check.classify(err)
  local last = check.last
  if last and type(err) == "string" and err:sub(-#last.message) == last.message then
    return { kind = last.kind, field = last.field }
  end
  return nil
end

-- PATH extended by KEY: "peers" + 3 → "peers[3]", "peers[3]" + "subnet"
-- → "peers[3].subnet"; a nil or empty PATH gives KEY alone.
function check.path(path, key)
  if math.type(key) == "integer" then return (path or "") .. "[" .. key .. "]" end
  if path == nil or path == "" then return key end
  return path .. "." .. key
end

local scope_mt = { __name = "check.scope" }

-- T, whose fields the field checks name as PATH.field.
function check.at(t, path)
  return setmetatable({ t = t, path = path }, scope_mt)
end

-- The table and path behind T (a table or a check.at scope).
local function unwrap(t)
  if getmetatable(t) == scope_mt then return t.t, t.path end
  return t, nil
end

-- The full name of FIELD of T (a table or a check.at scope).
function check.name(t, field)
  local _, path = unwrap(t)
  return check.path(path, field)
end

local function lookup(t, field)
  local raw, path = unwrap(t)
  return raw[field], check.path(path, field)
end

-- Is T an array (JSON [...])? Marked by the decoder or json.array, or, for
-- a table built in Lua, keyed 1..n. An empty unmarked table is both.
function check.is_array(t)
  if type(t) ~= "table" or json.kind(t) == "object" then return false end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == 0 or t[n] ~= nil and #t == n
end

-- Is T an object (JSON {...}): string keys only, not marked an array?
function check.is_object(t)
  if type(t) ~= "table" or json.kind(t) == "array" then return false end
  for k in pairs(t) do
    if type(k) ~= "string" then return false end
  end
  return true
end

-- Unknown keys are mistakes (a typo must not be silently ignored). T may
-- be a check.at scope, which gives WHERE.
function check.known_fields(t, allowed, where)
  local raw, path = unwrap(t)
  where = where or path
  if not check.is_object(raw) then
    check.fail(where or "input", raw, "must be an object")
  end
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  local bad = {}
  for k in pairs(raw) do
    if not set[k] then bad[#bad + 1] = k end
  end
  table.sort(bad)
  if #bad > 0 then
    local shown = show(bad[1])
    local msg = string.format("%sunknown field %s", where and (where .. ": ") or "", shown)
    -- Bad input like any other (the daemon answers 400 naming it); a
    -- name that show() hides (a key) is not named as the field either.
    local field = shown == "'" .. tostring(bad[1]) .. "'" and check.path(where, bad[1]) or where
    check.last = { kind = "input", field = field, message = msg }
    error(msg, 0)
  end
end

function check.table(t, field, optional)
  local v, name = lookup(t, field)
  if v == nil and optional then return nil end
  if type(v) ~= "table" then check.fail(name, v, v == nil and "missing" or "must be an object or array") end
  return v
end

-- A JSON object ({...}, not an array).
function check.object(t, field, optional)
  local v, name = lookup(t, field)
  if v == nil and optional then return nil end
  if v == nil then check.fail(name, nil, "missing") end
  if not check.is_object(v) then check.fail(name, v, "must be an object ({...})") end
  return v
end

-- A JSON array ([...], not an object): an object where a list belongs
-- would otherwise read as an empty list.
function check.array(t, field, optional, what)
  local v, name = lookup(t, field)
  if v == nil and optional then return nil end
  if v == nil then check.fail(name, nil, "missing") end
  if not check.is_array(v) then check.fail(name, v, "must be a list ([...])" .. (what and (" of " .. what) or "")) end
  return v
end

function check.string(t, field, optional)
  local v, name = lookup(t, field)
  if v == nil and optional then return nil end
  if type(v) ~= "string" or v == "" then
    check.fail(name, v, v == nil and "missing" or "must be a non-empty string")
  end
  return v
end

-- A whole number in MIN..MAX (JSON may write it 5e4 or 51820.0). NaN,
-- infinities and whole floats beyond the integers fail with the field's
-- name, not a Lua error.
function check.integer(t, field, min, max, optional)
  local v, name = lookup(t, field)
  if v == nil and optional then return nil end
  if v == nil then check.fail(name, nil, "missing") end
  if type(v) ~= "number" or v ~= v or (math.type(v) == "float" and v ~= math.floor(v)) then
    check.fail(name, v, "must be an integer")
  end
  if v < min or v > max then check.fail(name, v, string.format("must be %d..%d", min, max)) end
  return math.tointeger(v)
end

function check.boolean(t, field, optional)
  local v, name = lookup(t, field)
  if v == nil and optional then return nil end
  if type(v) ~= "boolean" then check.fail(name, v, v == nil and "missing" or "must be true or false") end
  return v
end

function check.oneof(t, field, choices, optional)
  local v, name = lookup(t, field)
  if v == nil and optional then return nil end
  for _, c in ipairs(choices) do if v == c then return v end end
  check.fail(name, v, "must be one of " .. table.concat(choices, ", "))
end

-- A node id (node config, NR config, peers): 1..63 of a-z 0-9 _ -,
-- starting with a letter or digit.
check.NODE_ID_MAX = 63

function check.node_id(value, field)
  if type(value) ~= "string" or #value > check.NODE_ID_MAX or not value:match("^[a-z0-9][a-z0-9_-]*$") then
    check.fail(field, value, "must be 1..63 of a-z 0-9 _ - (starting with a letter or digit)")
  end
  return value
end

-- A prefix in canonical form (host bits zero) → text, parsed.
function check.prefix(value, field, family)
  local p, _, why = ip.parse_cidr(value, { strict = true })
  if not p then check.fail(field, value, why) end
  if family and p.family ~= family then
    check.fail(field, value, "must be an IPv" .. family .. " prefix")
  end
  return ip.format_cidr(p), p
end

-- An address with its prefix length ("203.0.113.11/24").
function check.interface_addr(value, field)
  local p, _, why = ip.parse_cidr(value)
  if not p then check.fail(field, value, why) end
  return ip.format_cidr(p), p
end

function check.address(value, field, family)
  local a = ip.parse_addr(value)
  if not a then check.fail(field, value, "not an IPv4 or IPv6 address") end
  if family and a.family ~= family then
    check.fail(field, value, "must be an IPv" .. family .. " address")
  end
  return ip.format_addr(a), a
end

-- Where a peer can never be: nothing answers there, or it is this host.
local no_endpoint = { unspecified = "an unspecified address", loopback = "a loopback address",
  multicast = "a multicast address" }
local BROADCAST = ip.parse_addr("255.255.255.255")
local MAPPED = ip.parse_cidr("::ffff:0:0/96")

-- "a.b.c.d:port" or "[v6]:port" in canonical form, of an address that
-- can be a peer's: not unspecified, loopback, multicast or broadcast
-- (nor those as IPv4-mapped IPv6).
function check.endpoint(value, field)
  if type(value) ~= "string" then check.fail(field, value, "must be host:port") end
  local host, port = value:match("^%[([^%]]+)%]:(%d+)$")
  local v6 = host ~= nil
  if not host then host, port = value:match("^([^:]+):(%d+)$") end
  local a = host and ip.parse_addr(host)
  if not a or (a.family == 6) ~= v6 then
    check.fail(field, value, "must be a.b.c.d:port or [IPv6]:port")
  end
  port = tonumber(port)
  if port < 1 or port > 65535 then check.fail(field, value, "port must be 1..65535") end
  local v4 = a
  if ip.contains(MAPPED, a) then
    v4 = { family = 4, bytes = { a.bytes[13], a.bytes[14], a.bytes[15], a.bytes[16] } }
  end
  local class = no_endpoint[ip.classify(v4)] or (ip.equal(v4, BROADCAST) and "the broadcast address")
  if class then check.fail(field, value, "is " .. class .. ", not a peer's") end
  local text = ip.format_addr(a)
  return (v6 and ("[" .. text .. "]") or text) .. ":" .. port
end

-- A WireGuard public key: base64 of 32 bytes (44 characters).
function check.wg_key(value, field)
  if type(value) ~= "string" or #value ~= 44 or not value:match("^[A-Za-z0-9+/]+=$")
     or not value:sub(43, 43):match("[AEIMQUYcgkosw048]") then
    check.fail(field, value, "not a WireGuard key (base64 of 32 bytes)")
  end
  return value
end

-- Why S is not canonical base64 (what libsodium's strict decoder takes:
-- length a multiple of 4, "=" padding only at the end, unused bits of the
-- last character zero), or nil when it is.
function check.base64_problem(s)
  if type(s) ~= "string" or s == "" then return "not a non-empty string" end
  if s:find("[^A-Za-z0-9+/=]") then return "holds characters outside A-Z a-z 0-9 + / =" end
  if #s % 4 ~= 0 then return "its length is not a multiple of 4" end
  local pad = #(s:match("=*$"))
  if pad > 2 or s:sub(1, #s - pad):find("=", 1, true) then return "'=' may only pad the end" end
  local last = s:sub(#s - pad, #s - pad)
  if (pad == 2 and not last:match("[AQgw]")) or (pad == 1 and not last:match("[AEIMQUYcgkosw048]")) then
    return "the bits after its last byte are not zero"
  end
  return nil
end

return check
