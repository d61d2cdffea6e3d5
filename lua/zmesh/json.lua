-- JSON for Zero-Mesh: lua-cjson parses and escapes; this module only walks
-- tables so that objects come out with sorted keys (identical input gives
-- identical output, which re-rendering and diffs rely on), marks decoded
-- arrays and objects so that checks can tell them apart (even empty), and
-- caps what it reads.
local cjson = require "cjson"

local json = {}

json.null = cjson.null

local array_mt = { __name = "json.array" }
local object_mt = { __name = "json.object" }

-- Mark a table to encode as an array / object even when empty.
function json.array(t) return setmetatable(t or {}, array_mt) end
function json.object(t) return setmetatable(t or {}, object_mt) end

-- What a decoded or marked table is: "array", "object", or nil for a
-- table built in Lua without a mark (an empty one can be either).
function json.kind(t)
  local mt = getmetatable(t)
  if mt == array_mt then return "array" end
  if mt == object_mt then return "object" end
  return nil
end

-- A deep copy that keeps the marks (metatables): for callers that hand
-- out what they keep, or keep what they were given.
function json.copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = json.copy(x) end
  return setmetatable(out, getmetatable(v))
end

local EMPTY = "%[[ \t\n\r]*%]"

-- The quote that ends the string whose text starts at J (one that no odd
-- run of backslashes escapes), or nil.
local function string_end(text, j)
  while true do
    local q = text:find('"', j, true)
    if not q then return nil end
    local k = q - 1
    while text:byte(k) == 92 do k = k - 1 end
    if (q - 1 - k) % 2 == 0 then return q end
    j = q + 1
  end
end

-- lua-cjson 2.1 decodes [] and {} alike to an empty table and has no
-- decode_array_with_array_mt, so before decoding every empty array
-- outside a string is rewritten to hold one sentinel string. The
-- sentinel is a run of NULs longer than any in the input: a decoded
-- string gets NULs only from "\u0000" escapes (cjson refuses raw NULs),
-- so no input string can equal it. Returns the text and the sentinel,
-- or the text unchanged when it holds no empty array.
local function mark_empty_arrays(text)
  local s, e = text:find(EMPTY)
  if not s then return text, nil end
  -- The longest run of "\u0000" escapes, found in one pass.
  local longest, run, last, at = 0, 0, nil, text:find("\\u0000", 1, true)
  while at do
    run = (at == last) and run + 1 or 1
    if run > longest then longest = run end
    last = at + 6
    at = text:find("\\u0000", last, true)
  end
  local sentinel = string.rep("\0", longest + 1)
  local token = '"' .. string.rep("\\u0000", longest + 1) .. '"'
  -- Strings before the next candidate S are skipped whole, so a "[]"
  -- inside one is left alone. S and the next quote Q are found again
  -- only once passed: one pass over the text.
  local out, from = {}, 1
  local q = text:find('"', 1, true)
  while s do
    if q and q < s then
      local c = string_end(text, q + 1)
      if not c then return text, nil end -- unterminated: cjson says so
      q = text:find('"', c + 1, true)
      if c > s then s, e = text:find(EMPTY, c + 1) end
    else
      out[#out + 1] = text:sub(from, s)
      out[#out + 1] = token
      from = e
      s, e = text:find(EMPTY, e + 1)
    end
  end
  out[#out + 1] = text:sub(from)
  return table.concat(out), sentinel
end

-- Mark every decoded table as array or object (all empty arrays carry
-- SENTINEL, so an empty table is an object). lua-cjson 2.1 also gives
-- every number as a float under Lua 5.4 (51820.0): whole numbers become
-- integers again, as the JSON text meant them.
local finish

-- One member X of a decoded table, finished (strings, the most of a
-- network file, pass without a call).
local function member(x, sentinel)
  local t = type(x)
  if t == "table" then return finish(x, sentinel) end
  if t == "number" and math.type(x) == "float" then return math.tointeger(x) or x end
  return x
end

function finish(v, sentinel)
  if type(v) ~= "table" then return member(v, sentinel) end
  if v[1] ~= nil then
    if v[1] == sentinel and v[2] == nil then
      v[1] = nil
    else
      for i = 1, #v do
        local x = v[i]
        if type(x) ~= "string" then v[i] = member(x, sentinel) end
      end
    end
    return setmetatable(v, array_mt)
  end
  for k, x in pairs(v) do
    if type(x) ~= "string" then v[k] = member(x, sentinel) end
  end
  return setmetatable(v, object_mt)
end

-- Parse TEXT; returns value or nil, "invalid JSON: …". Arrays and
-- objects come back marked (json.kind tells them apart, empty ones too).
function json.decode(text)
  if type(text) ~= "string" then
    return nil, "invalid JSON: expected text, got " .. type(text)
  end
  local marked, sentinel = mark_empty_arrays(text)
  local ok, value = pcall(cjson.decode, marked)
  if not ok and marked ~= text then
    -- The message names a position: take it from the text as given.
    ok, value = pcall(cjson.decode, text)
  end
  if not ok then
    return nil, "invalid JSON: " .. tostring(value):gsub("^.-: ", "")
  end
  return finish(value, sentinel)
end

-- Is T encoded as a JSON array? By its mark, else when it is empty or a
-- sequence.
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
json.is_array = is_array

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

-- The most JSON input read from a file or stream: far above any real
-- config or network file, and it stops `zmesh node diff /dev/zero`.
json.MAX_INPUT = 16 * 1024 * 1024

-- All of file F (called NAME in messages), at most MAX_INPUT bytes;
-- returns the text or nil, "NAME: …".
function json.read_all(f, name)
  local parts, size = {}, 0
  while true do
    local chunk, err, code = f:read(65536)
    if chunk == nil then
      if code == 21 then return nil, name .. ": is a directory, not a file" end -- EISDIR
      if err then return nil, name .. ": " .. tostring(err) end
      break
    end
    size = size + #chunk
    if size > json.MAX_INPUT then
      return nil, string.format("%s: larger than %d MiB, the limit for JSON input",
        name, json.MAX_INPUT // (1024 * 1024))
    end
    parts[#parts + 1] = chunk
  end
  return table.concat(parts)
end

-- Read and parse all of F (NAME in messages); value or nil, "NAME: …".
function json.read(f, name)
  local text, err = json.read_all(f, name)
  if not text then return nil, err end
  local v, perr = json.decode(text)
  if v == nil then return nil, name .. ": " .. perr end
  return v
end

-- Read and parse a whole file.
function json.read_file(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local v, rerr = json.read(f, path)
  f:close()
  return v, rerr
end

return json
