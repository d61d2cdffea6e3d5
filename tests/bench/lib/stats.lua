-- Shared by the benchmarks: wall-clock time, the median of alternated
-- rounds with its spread, and one way of printing a figure against its
-- baseline and target. Nothing here asserts anything about time.
--
--   local stats = dofile(ROOT .. "/tests/bench/lib/stats.lua")
local stats = {}

local uv_ok, uv = pcall(require, "luv")

-- Wall-clock seconds (monotonic, nanosecond resolution).
if uv_ok then
  function stats.now() return uv.hrtime() / 1e9 end
else
  function stats.now()
    local f = io.popen("date +%s%N")
    local t = tonumber(f:read("l"))
    f:close()
    return t / 1e9
  end
end

function stats.sorted(list)
  local c = table.move(list, 1, #list, 1, {})
  table.sort(c)
  return c
end

-- The median of LIST (the lower one of two middles), its min and max.
function stats.median(list)
  local c = stats.sorted(list)
  return c[(#c + 1) // 2], c[1], c[#c]
end

-- "12.3 ms (11.9–13.0)" for a list of seconds, with SCALE and UNIT
-- (default milliseconds).
function stats.show(list, scale, unit, fmt)
  scale, unit, fmt = scale or 1000, unit or "ms", fmt or "%.1f"
  local m, lo, hi = stats.median(list)
  return string.format(fmt .. " %s (" .. fmt .. "–" .. fmt .. ")", m * scale, unit, lo * scale, hi * scale)
end

-- "met" or "MISSED": whether VALUE is on the right side of TARGET
-- (KIND "<": below it, ">=": at least it).
function stats.verdict(value, kind, target)
  local ok = (kind == "<" and value < target) or (kind == ">=" and value >= target)
    or (kind == "<=" and value <= target)
  return ok and "met" or "MISSED"
end

-- Rounds alternated between SETUPS ({name = fn}, run in the order of the
-- list ORDER, each round starting one further), ROUNDS times; returns
-- {name = {seconds…}} as each fn returns (a number, or a table of numbers
-- by key: then {name = {key = {…}}}).
function stats.alternate(order, setups, rounds)
  local out = {}
  for _, name in ipairs(order) do out[name] = {} end
  for round = 1, rounds do
    for i = 0, #order - 1 do
      local name = order[(round + i - 1) % #order + 1]
      local r = setups[name](round)
      if type(r) == "table" then
        for k, v in pairs(r) do
          out[name][k] = out[name][k] or {}
          table.insert(out[name][k], v)
        end
      else
        table.insert(out[name], r)
      end
    end
  end
  return out
end

return stats
