-- An interactive Lua prompt with the library loaded, for prototyping
-- topologies. Statements and expressions as in lua5.4 -i.
local repl = {}

local function preload_env()
  local env = setmetatable({}, { __index = _G })
  env.core = require "zmesh.core"
  env.json = require "zmesh.json"
  env.zmesh = setmetatable({}, {
    __index = function(_, k) return require("zmesh." .. k) end,
  })
  return env
end

local function show(...)
  local n = select("#", ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do
    local v = select(i, ...)
    if type(v) == "table" and getmetatable(v) == nil then
      local ok, text = pcall((require "zmesh.json").encode, v, { pretty = true })
      parts[i] = ok and text or tostring(v)
    else
      parts[i] = tostring(v)
    end
  end
  io.stdout:write(table.concat(parts, "\t"), "\n")
end

-- Compile one chunk: as an expression first, then as statements.
-- Returns fn, or nil and "incomplete" / an error message.
local function compile(src, env)
  local fn = load("return " .. src, "=repl", "t", env)
  if fn then return fn end
  local err
  fn, err = load(src, "=repl", "t", env)
  if fn then return fn end
  if err:match("<eof>$") then return nil, "incomplete" end
  return nil, err
end

function repl.run(input, output)
  input, output = input or io.stdin, output or io.stdout
  local env = preload_env()
  output:write("zmesh repl — core, json and zmesh.<module> are loaded; Ctrl-D ends\n")
  local buffer = nil
  while true do
    output:write(buffer and ">> " or "> ")
    output:flush()
    local line = input:read("l")
    if not line then output:write("\n") break end
    local src = buffer and (buffer .. "\n" .. line) or line
    local fn, err = compile(src, env)
    if fn then
      buffer = nil
      show(select(2, xpcall(fn, debug.traceback)))
    elseif err == "incomplete" then
      buffer = src
    else
      buffer = nil
      output:write(err, "\n")
    end
  end
  return 0
end

return {
  summary = "interactive Lua with the Zero-Mesh library loaded",
  usage = "",
  help = [[
Starts an interactive Lua 5.4 prompt with `core` (zmesh.core), `json` and
`zmesh.<module>` (any library module, loaded on first use) at hand, to
prototype topologies. Expressions print their value; tables print as JSON.]],
  run = function() return repl.run() end,
  repl = repl,
}
