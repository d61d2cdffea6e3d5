-- core.contract: every option table a function of zmesh.core takes, with
-- its fields, as data built from the very lists the bindings check. A Lua
-- fake core can check the same lists; this spec makes sure none is
-- missing or wrong. Every probe here raises before anything is done: an
-- unknown field, or a field of a type no field takes.
local core = require "zmesh.core"

local PROBE = "zm_contract_probe"

-- Call FN with an option table OPTS at argument AT (1 or 2); the error text.
local function raise_of(fn, at, opts)
  local ok, err
  if at == 1 then ok, err = pcall(fn, opts) else ok, err = pcall(fn, nil, opts) end
  return not ok and tostring(err) or nil
end

-- Does FN check the fields of a table at argument AT?
local function takes_options(fn, at)
  local err = raise_of(fn, at, { [PROBE] = true })
  return err ~= nil and err:find("unknown field '" .. PROBE .. "'", 1, true) ~= nil
end

-- Areas whose bindings are another engineer's, until they register.
local pending_areas = { http = true }

describe("core.contract", function()
  it("is a table of field lists", function()
    assert.is_table(core.contract)
    for name, fields in pairs(core.contract) do
      assert.matches("^%l+%.%l+", name)
      assert.is_true(#fields > 0, name)
      for _, f in ipairs(fields) do assert.is_string(f, name) end
    end
  end)

  it("names every function that takes an option table, at the position it takes it", function()
    local missing, unregistered = {}, {}
    for area, t in pairs(core) do
      if type(t) == "table" and area ~= "contract" then
        for fname, fn in pairs(t) do
          if type(fn) == "function" then
            for at = 1, 2 do
              if takes_options(fn, at) and not core.contract[area .. "." .. fname] then
                local list = pending_areas[area] and unregistered or missing
                list[#list + 1] = string.format("%s.%s (argument #%d)", area, fname, at)
              end
            end
          end
        end
      end
    end
    table.sort(missing)
    assert.same({}, missing)
    if #unregistered > 0 then
      table.sort(unregistered)
      pending("not in core.contract yet (zm_contract_add in their binding): "
        .. table.concat(unregistered, ", "))
    end
  end)

  it("lists only fields the function accepts, and the function exists", function()
    for name, fields in pairs(core.contract) do
      local area, fname = name:match("^(%l+)%.([%l_]+)")
      local fn = core[area] and core[area][fname]
      assert.is_function(fn, name)
      -- Top-level entries: each field is known to the function (a wrong
      -- value raises, but never as an unknown field).
      if not name:find(" ", 1, true) then
        local at = takes_options(fn, 1) and 1 or 2
        for _, f in ipairs(fields) do
          local err = raise_of(fn, at, { [f] = { [PROBE] = true } })
          assert.is_string(err, name .. " did not raise for field " .. f)
          assert.is_nil(err:find("unknown field '" .. f .. "'", 1, true), name .. ": " .. err)
        end
      end
    end
  end)
end)
