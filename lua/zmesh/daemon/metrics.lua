-- Counters and gauges of the daemon, in Prometheus' text exposition
-- format (version 0.0.4): `# HELP`, `# TYPE`, then one line per series,
-- labels sorted, values escaped.
local metrics = {}

local Registry = {}
Registry.__index = Registry

function metrics.new()
  return setmetatable({ series = {}, meta = {}, order = {} }, Registry)
end

-- Declare NAME with its TYPE ("counter" | "gauge") and HELP text.
function Registry:declare(name, type_, help)
  if not self.meta[name] then
    self.meta[name] = { type = type_, help = help }
    self.order[#self.order + 1] = name
    self.series[name] = {}
  end
end

local function escape(v)
  return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function label_text(labels)
  if not labels or next(labels) == nil then return "" end
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = string.format('%s="%s"', k, escape(labels[k])) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function Registry:add(name, labels, by)
  local s = assert(self.series[name], "undeclared metric " .. name)
  local key = label_text(labels)
  s[key] = (s[key] or 0) + (by or 1)
end

function Registry:set(name, labels, value)
  local s = assert(self.series[name], "undeclared metric " .. name)
  s[label_text(labels)] = value
end

-- Forget every series of NAME (a gauge recomputed whole at each scrape).
function Registry:clear(name)
  self.series[name] = {}
end

local function number(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.6g", v)
end

function Registry:render()
  local out = {}
  for _, name in ipairs(self.order) do
    local m = self.meta[name]
    out[#out + 1] = string.format("# HELP %s %s", name, m.help)
    out[#out + 1] = string.format("# TYPE %s %s", name, m.type)
    local keys = {}
    for k in pairs(self.series[name]) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      out[#out + 1] = name .. k .. " " .. number(self.series[name][k])
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return metrics
