-- Loading policies: plain Lua files, found on a search path (a farmer's or
-- user's directories first, the defaults last), run as text in a sandbox
-- with no io or os, checked against the contract their caller gives.
--
-- A policy file returns { name = "<its name>", version = <string|number>,
-- <hook> = function, … }. Whatever goes wrong is reported with the file and
-- line, as "path:line: message", and the caller renders nothing.
local policy = {}

local function default_dir()
  local src = debug.getinfo(1, "S").source
  local root = src:match("^@(.*)/lua/zmesh/policy%.lua$")
  return (root or ".") .. "/policies"
end

policy.default_dir = default_dir()

-- The search path: EXTRA (list) first, then $ZMESH_POLICY_PATH (colon
-- separated), then the defaults.
function policy.search_path(extra)
  local path = {}
  for _, d in ipairs(extra or {}) do path[#path + 1] = d end
  local env = os.getenv("ZMESH_POLICY_PATH")
  if env then
    for d in env:gmatch("[^:]+") do path[#path + 1] = d end
  end
  path[#path + 1] = policy.default_dir
  return path
end

-- Modules a policy may require: pure helpers only.
local allowed_modules = { ["zmesh.ip"] = true }

local function sandbox()
  local env = {}
  for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall",
      "select", "tonumber", "tostring", "type", "xpcall", "setmetatable",
      "getmetatable", "rawequal", "rawget", "rawset", "rawlen" }) do
    env[k] = _G[k]
  end
  for _, lib in ipairs({ "math", "string", "table", "utf8" }) do
    local copy = {}
    for k, v in pairs(_G[lib]) do copy[k] = v end
    env[lib] = copy
  end
  env.require = function(name)
    if not allowed_modules[name] then
      error(string.format("policies may not require '%s'", tostring(name)), 2)
    end
    return require(name)
  end
  env._G = env
  return env
end

local function find(name, path)
  for _, dir in ipairs(path) do
    local file = dir .. "/" .. name .. ".lua"
    local f = io.open(file, "r")
    if f then
      local src = f:read("a")
      f:close()
      return file, src
    end
  end
  return nil
end

-- "file:line" of a policy's hook (or of the file when the hook is absent).
function policy.where(p, hook)
  local fn = hook and rawget(p, hook)
  if type(fn) == "function" then
    local info = debug.getinfo(fn, "S")
    return string.format("%s:%d", p._file, info.linedefined)
  end
  return p._file
end

-- A contract breach: raises "file:line: policy NAME: hook HOOK: MESSAGE".
function policy.breach(p, hook, fmt, ...)
  error(string.format("%s: policy %s: %s%s", policy.where(p, hook), p.name,
    hook and ("hook " .. hook .. ": ") or "", string.format(fmt, ...)), 0)
end

-- Load policy NAME. contract.hooks lists the functions it must define.
-- opts.path: extra directories searched first. Returns the policy or nil
-- and a message naming the file and line.
function policy.load(name, contract, opts)
  opts = opts or {}
  if type(name) ~= "string" or not name:match("^[%w_]+$") then
    return nil, string.format("invalid policy name '%s'", tostring(name))
  end
  local path = policy.search_path(opts.path)
  local file, src = find(name, path)
  if not file then
    return nil, string.format("policy '%s' not found in %s", name, table.concat(path, ":"))
  end
  local chunk, err = load(src, "@" .. file, "t", sandbox())
  if not chunk then return nil, err end
  local ok, p = pcall(chunk)
  if not ok then return nil, tostring(p) end
  if type(p) ~= "table" then
    return nil, string.format("%s: policy %s must return a table, got %s", file, name, type(p))
  end
  if p.name ~= name then
    return nil, string.format("%s: policy name is '%s', expected '%s'", file, tostring(p.name), name)
  end
  if type(p.version) ~= "string" and type(p.version) ~= "number" then
    return nil, string.format("%s: policy %s has no version", file, name)
  end
  for _, hook in ipairs((contract and contract.hooks) or {}) do
    if type(p[hook]) ~= "function" then
      return nil, string.format("%s: policy %s must define function '%s'", file, name, hook)
    end
  end
  rawset(p, "_file", file)
  return p
end

-- Call HOOK of policy P; a runtime error in the policy keeps its own
-- file:line and gains the policy's name. Returns what the hook returns.
-- Hot: the network tool calls role.endpoint for every pair of public NRs,
-- so the message handler is made once per policy and hook, and results
-- pass through without a table.
local handlers = setmetatable({}, { __mode = "k" })

local function handler(p, hook)
  local per = handlers[p]
  if not per then per = {} handlers[p] = per end
  local h = per[hook]
  if not h then
    h = function(e)
      return string.format("%s (in policy %s, hook %s)", tostring(e), p.name, hook)
    end
    per[hook] = h
  end
  return h
end

local function finish(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

function policy.call(p, hook, ...)
  return finish(xpcall(p[hook], handler(p, hook), ...))
end

return policy
