-- Input checks that fail with one clear message naming the field and the
-- value, e.g. "subnet '10.1.1.0/33': invalid prefix length". They raise
-- (error level 0); entry points let the message through unchanged.
local ip = require "zmesh.ip"

local check = {}

local function show(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

function check.fail(field, value, why)
  if value == nil then error(string.format("%s: %s", field, why), 0) end
  error(string.format("%s %s: %s", field, show(value), why), 0)
end

-- Unknown keys are mistakes (a typo must not be silently ignored).
function check.known_fields(t, allowed, where)
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  local bad = {}
  for k in pairs(t) do
    if not set[k] then bad[#bad + 1] = tostring(k) end
  end
  table.sort(bad)
  if #bad > 0 then
    error(string.format("%sunknown field '%s'", where and (where .. ": ") or "", bad[1]), 0)
  end
end

function check.table(t, field, optional)
  local v = t[field]
  if v == nil and optional then return nil end
  if type(v) ~= "table" then check.fail(field, v, v == nil and "missing" or "must be an object or array") end
  return v
end

function check.string(t, field, optional)
  local v = t[field]
  if v == nil and optional then return nil end
  if type(v) ~= "string" or v == "" then
    check.fail(field, v, v == nil and "missing" or "must be a non-empty string")
  end
  return v
end

function check.integer(t, field, min, max, optional)
  local v = t[field]
  if v == nil and optional then return nil end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    check.fail(field, v, v == nil and "missing" or "must be an integer")
  end
  v = math.tointeger(v)
  if v < min or v > max then check.fail(field, v, string.format("must be %d..%d", min, max)) end
  return v
end

function check.boolean(t, field, optional)
  local v = t[field]
  if v == nil and optional then return nil end
  if type(v) ~= "boolean" then check.fail(field, v, "must be true or false") end
  return v
end

function check.oneof(t, field, choices, optional)
  local v = t[field]
  if v == nil and optional then return nil end
  for _, c in ipairs(choices) do if v == c then return v end end
  check.fail(field, v, "must be one of " .. table.concat(choices, ", "))
end

-- A prefix in canonical form (host bits zero) → text, parsed.
function check.prefix(value, field, family)
  local p, err = ip.parse_cidr(value, { strict = true })
  if not p then check.fail(field, value, (err:gsub("^'[^']*' ", ""))) end
  if family and p.family ~= family then
    check.fail(field, value, "must be an IPv" .. family .. " prefix")
  end
  return ip.format_cidr(p), p
end

-- An address with its prefix length ("203.0.113.11/24").
function check.interface_addr(value, field)
  local p, err = ip.parse_cidr(value)
  if not p then check.fail(field, value, (err:gsub("^'[^']*' ", ""))) end
  return ip.format_cidr(p), p
end

function check.address(value, field, family)
  local a, err = ip.parse_addr(value)
  if not a then check.fail(field, value, "not an IPv4 or IPv6 address") end
  if family and a.family ~= family then
    check.fail(field, value, "must be an IPv" .. family .. " address")
  end
  local _ = err
  return ip.format_addr(a), a
end

-- "a.b.c.d:port" or "[v6]:port" in canonical form.
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

return check
