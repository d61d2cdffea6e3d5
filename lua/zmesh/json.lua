-- JSON for Zero-Mesh: lua-cjson parses and escapes; this module only walks
-- tables so that objects come out with sorted keys (identical input gives
-- identical output, which re-rendering and diffs rely on).
local cjson = require "cjson"

local json = {}

json.null = cjson.null

local array_mt = { __name = "json.array" }
local object_mt = { __name = "json.object" }

-- Mark a table to encode as an array / object even when empty.
function json.array(t) return setmetatable(t or {}, array_mt) end
function json.object(t) return setmetatable(t or {}, object_mt) end

-- lua-cjson 2.1 gives every number as a float under Lua 5.4 (51820.0);
-- whole numbers become integers again, as the JSON text meant them.
local function integers(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = integers(x) end
    return v
  end
  if math.type(v) == "float" then return math.tointeger(v) or v end
  return v
end

-- Parse TEXT; returns value or nil, "invalid JSON: …".
function json.decode(text)
  local ok, value = pcall(cjson.decode, text)
  if not ok then
    return nil, "invalid JSON: " .. tostring(value):gsub("^.-: ", "")
  end
  return integers(value)
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt == array_mt then return true end
  if mt == object_mt then return false end
  local n = #t
  if n == 0 then return next(t) == nil end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

-- cjson escapes "/" as "\/"; JSON does not need it, and paths and
-- prefixes read better without. Every "/" in cjson's output carries that
-- escape just before it, so dropping it is exact.
local function encode_string(s)
  local text = cjson.encode(s)
  if text:find("/", 1, true) then text = text:gsub("\\/", "/") end
  return text
end

local function encode_value(v, indent, depth, out)
  local tv = type(v)
  if tv == "table" then
    local nl = indent and ("\n" .. string.rep(indent, depth + 1)) or ""
    local close = indent and ("\n" .. string.rep(indent, depth)) or ""
    local sep = indent and ": " or ":"
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" return end
      out[#out + 1] = "["
      for i = 1, #v do
        out[#out + 1] = (i > 1 and "," or "") .. nl
        encode_value(v[i], indent, depth + 1, out)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error("json: object key must be a string, got " .. type(k), 0)
        end
        keys[#keys + 1] = k
      end
      if #keys == 0 then out[#out + 1] = "{}" return end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        out[#out + 1] = (i > 1 and "," or "") .. nl .. encode_string(k) .. sep
        encode_value(v[k], indent, depth + 1, out)
      end
      out[#out + 1] = close .. "}"
    end
  elseif tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "number" or tv == "boolean" or v == cjson.null then
    out[#out + 1] = cjson.encode(v)
  elseif v == nil then
    out[#out + 1] = "null"
  else
    error("json: cannot encode a " .. tv, 0)
  end
end

-- Encode V; opts.pretty indents by two spaces.
function json.encode(v, opts)
  local out = {}
  encode_value(v, (opts and opts.pretty) and "  " or nil, 0, out)
  return table.concat(out)
end

-- Read and parse a whole file.
function json.read_file(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  local v, perr = json.decode(text)
  if v == nil then return nil, path .. ": " .. perr end
  return v
end

return json
