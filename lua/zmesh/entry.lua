-- Named entry points: what `zmesh call`, the daemon and provisioning invoke.
-- An entry "area.verb" lives in the module registered for its area; each
-- entry takes one table (parsed JSON) and returns a result table, or raises
-- an error message (a string naming the field and value at fault).
local entry = {}

-- Area → module. Each module returns { verb = function(params) … end, … }
-- plus a `describe` table (verb → one line) for `zmesh call --list`.
local areas = {
  node = "zmesh.node.entries",
  nr = "zmesh.nr.entries",
  container = "zmesh.container.entries",
  net = "zmesh.net.entries",
  key = "zmesh.key.entries",
}

local function area_module(area)
  local modname = areas[area]
  if not modname then return nil end
  local ok, mod = pcall(require, modname)
  if not ok then
    -- A missing module is "no such area"; a broken one is a real error.
    if tostring(mod):find("module '" .. modname .. "' not found", 1, true) then
      return nil
    end
    error(mod, 0)
  end
  return mod
end

-- The function for NAME, or nil and a message.
function entry.resolve(name)
  if type(name) ~= "string" or not name:match("^[%w_]+%.[%w_%-]+$") then
    return nil, string.format("unknown entry point '%s' (expected area.verb)", tostring(name))
  end
  local area, verb = name:match("^([%w_]+)%.(.+)$")
  local mod = area_module(area)
  local fn = mod and mod[verb]
  if type(fn) ~= "function" then
    return nil, string.format("unknown entry point '%s'", name)
  end
  return fn
end

-- Every entry point with its description, sorted by name.
function entry.list()
  local names = {}
  for area in pairs(areas) do
    local mod = area_module(area)
    if mod then
      for verb, fn in pairs(mod) do
        if type(fn) == "function" then
          names[#names + 1] = {
            name = area .. "." .. verb,
            summary = mod.describe and mod.describe[verb] or "",
          }
        end
      end
    end
  end
  table.sort(names, function(a, b) return a.name < b.name end)
  return names
end

-- Call NAME with PARAMS; returns true, result or false, message.
function entry.call(name, params)
  local fn, err = entry.resolve(name)
  if not fn then return false, err end
  local ok, result = xpcall(fn, function(e)
    if type(e) == "string" and os.getenv("ZMESH_TRACE") then
      return debug.traceback(e, 2)
    end
    return e
  end, params)
  if not ok then return false, tostring(result) end
  return true, result
end

return entry
