-- Loading policies: plain Lua files, found on a search path (a farmer's or
-- user's directories first, the defaults last), run as text in a sandbox
-- with no io or os, checked against the contract their caller gives.
--
-- A policy file returns { name = "<its name>", version = <string|number>,
-- <hook> = function, … }. Whatever goes wrong is reported with the file and
-- line, as "path:line: message", and the caller renders nothing.
--
-- The sandbox (DESIGN §9: a policy can neither hang the node nor reach
-- host tables):
-- * Every call into a policy (its top level when loading, each hook call)
--   runs under an instruction budget, a count hook on the running
--   coroutine; an endless loop stops with "path:line: policy took too
--   long". A policy hook that makes the host call another policy (the
--   aggregator's req.reachable asks role.endpoint) shares the outer
--   call's budget: the outermost call is bounded, whatever it triggers.
-- * What the host hands a policy (hook arguments, required modules, and
--   whatever is read from them) is seen through read-only views: reads,
--   pairs, ipairs, # and next work, a write raises "path:line: attempt to
--   modify a read-only table (NAME)". Host functions reached that way
--   (ip.parsed, req.reachable) get the host's own tables as arguments and
--   return copies, which are the policy's.
-- * getmetatable gives a read-only view of the string metatable; raw*,
--   next and setmetatable see through views but never write through them.
-- * What a hook returns is copied into plain host tables (views replaced
--   by the host's own tables), so that the caller reading it never runs
--   policy metamethods outside the budget; __gc is refused for the same
--   reason.
local policy = {}

local debug_getinfo, gethook, sethook = debug.getinfo, debug.gethook, debug.sethook
local raw_next, raw_type, raw_select = next, type, select

local function default_dir()
  local src = debug_getinfo(1, "S").source
  local root = src:match("^@(.*)/lua/zmesh/policy%.lua$")
  return (root or ".") .. "/policies"
end

policy.default_dir = default_dir()

-- Instructions one call may run, nested policy calls included. The
-- default policies need under a million per call on a 1000-NR network,
-- about 5e7 in the worst cases measured (an aggregator call whose every
-- reachability check asks role.endpoint, 240,000 nested calls; a subnet
-- scan of a nearly full /8); a bare endless loop uses it up in about
-- 0.4 s of CPU.
policy.budget = 100000000
-- CPU seconds one call may take, nested calls included: a loop of short
-- C calls on large strings (a 1 MB concatenation per instruction) runs
-- few instructions but much time.
policy.seconds = 2

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

-- ---- where a policy is running ----

-- Chunk names ("@path") of every policy file loaded, to find the
-- policy's own frame on the stack from inside a hook or a metamethod.
local sources = {}
-- File of the outermost running call: the fallback when no policy frame
-- has a line (it stopped inside a C function called from a tail call).
local running_file = "policy"

-- "path:line" of the innermost policy frame of the running stack.
local function stopped_at()
  local level = 2
  while true do
    local info = debug_getinfo(level, "Sl")
    if not info then return running_file end
    if sources[info.source] and info.currentline > 0 then
      return info.source:sub(2) .. ":" .. info.currentline
    end
    level = level + 1
  end
end

local function error_text(e)
  if raw_type(e) == "string" then return e end
  if raw_type(e) == "number" then return tostring(e) end
  return string.format("(error object is a %s value)", raw_type(e))
end

-- Lua cuts a long chunk name in positions ("...licies/v2/role.lua:3:"):
-- the policy's whole path instead, when it is one of the policy files.
local function full_position(msg)
  local tail, line, rest = msg:match("^%.%.%.(.-):(%d+): (.*)$")
  if tail then
    for src in pairs(sources) do
      local path = src:sub(2)
      if path:sub(-#tail) == tail then return path .. ":" .. line .. ": " .. rest end
    end
  end
  return msg
end

local function has_position(msg)
  for src in pairs(sources) do
    local path = src:sub(2)
    if msg:sub(1, #path + 1) == path .. ":" then return true end
  end
  return false
end

local control_escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- A message about a policy, as one line a terminal shows as it is:
-- whatever the policy put in it, its control characters are escaped.
local function one_line(msg)
  return (msg:gsub("%c", function(c) return control_escapes[c] or string.format("\\x%02x", c:byte()) end))
end

-- The message of an error a policy raised: always "file:line: …", the
-- whole path (an error("x", 0) or a table is placed where it was raised).
local function policy_error(e)
  local text = full_position(error_text(e))
  if not has_position(text) then text = stopped_at() .. ": " .. text end
  return one_line(text)
end

-- ---- the budget ----

-- After a stop the hook fires again this often, so that whatever policy
-- code still runs (an error handler, a __close) stops as well.
local AFTER = 1000
-- Set when the budget ran out in the current outermost call: the
-- sandbox's pcall and xpcall re-raise it instead of catching it.
local stop_message = nil

-- The hook fires every STEP instructions: often enough that STEP short C
-- calls take well under a second, rarely enough to cost nothing.
local STEP = 1000
local clock = os.clock
local used, started = 0, 0

local function on_count()
  if not stop_message then
    used = used + STEP
    if used < policy.budget and clock() - started < policy.seconds then return end
    stop_message = stopped_at() .. ": policy took too long"
  end
  sethook(on_count, "", AFTER)
  error(stop_message, 0)
end

-- The budget of a new outermost call of FILE.
local function arm(file)
  stop_message, running_file = nil, file
  used, started = 0, clock()
  sethook(on_count, "", STEP)
end

-- Installs the budget for a call of FILE, unless the running coroutine
-- already runs under it (a nested call: the outer call's budget goes on).
-- Returns the hook found, for leave().
local function enter(file)
  local h, mask, count = gethook()
  if h ~= on_count then arm(file) end
  return h, mask, count
end

-- Puts back the hook enter() found (none, usually).
local function leave(h, mask, count)
  if h == on_count then return end
  if raw_type(h) == "function" then sethook(h, mask, count) else sethook() end
end

-- ---- read-only views ----

-- Host value → its view (tables) or wrapper (functions), and back. Weak
-- keys: a view lives as long as its host table, and the same host table
-- always gives the same view (the role policy caches by facts table).
local view_of = setmetatable({}, { __mode = "k" })
local host_of = setmetatable({}, { __mode = "k" })
-- View → its name in messages ("req.current", "zmesh.ip").
local name_of = setmetatable({}, { __mode = "k" })

local function child_name(name, k)
  if raw_type(k) == "string" and k:match("^[%a_][%w_]*$") then return name .. "." .. k end
  if raw_type(k) == "number" or raw_type(k) == "boolean" then return name .. "[" .. tostring(k) .. "]" end
  if raw_type(k) == "string" then return name .. "[" .. string.format("%q", k) .. "]" end
  return name .. "[" .. raw_type(k) .. "]"
end

local function refuse(name)
  error(string.format("%s: attempt to modify a read-only table (%s)", stopped_at(), name), 0)
end

local view, wrap_fn

-- A host value as the policy sees it: tables as views, functions wrapped.
local function outward(v, name)
  local t = raw_type(v)
  if t == "table" then return view_of[v] or view(v, name)
  elseif t == "function" then return view_of[v] or wrap_fn(v, name) end
  return v
end

-- A policy value as the host gets it: views and wrappers are the host's
-- own values again; the policy's tables stay as they are.
local function inward(v)
  local t = raw_type(v)
  if t == "table" or t == "function" then return host_of[v] or v end
  return v
end

local function inward_all(...)
  local n = raw_select("#", ...)
  if n == 1 then return inward((...)) end
  if n == 2 then
    local a, b = ...
    return inward(a), inward(b)
  end
  local t = table.pack(...)
  for i = 1, t.n do t[i] = inward(t[i]) end
  return table.unpack(t, 1, t.n)
end

-- next() that sees through views (raw next on a view sees nothing).
local function view_next(t, k)
  local h = host_of[t]
  if h == nil or raw_type(h) ~= "table" then return raw_next(t, k) end
  local k2, v = raw_next(h, inward(k))
  if k2 == nil then return nil end
  local name = name_of[t]
  return outward(k2, name), outward(v, child_name(name, k2))
end

local view_mt = {
  __index = function(p, k)
    local v = host_of[p][k]
    local t = raw_type(v)
    if t == "table" then return view_of[v] or view(v, child_name(name_of[p], k))
    elseif t == "function" then return view_of[v] or wrap_fn(v, child_name(name_of[p], k)) end
    return v
  end,
  __newindex = function(p, k) refuse(child_name(name_of[p], k)) end,
  __len = function(p) return #host_of[p] end,
  __pairs = function(p) return view_next, p, nil end,
  -- getmetatable(view) gives false, setmetatable(view) raises.
  __metatable = false,
}

view = function(t, name)
  local p = setmetatable({}, view_mt)
  view_of[t], host_of[p], name_of[p] = p, t, name
  return p
end

-- A deep copy of table ROOT, read raw (no metamethods run), with the
-- same sharing and no metatables. MAP_VALUE(t) says what a table value
-- becomes: true to copy it too, or the value to put instead. MAP_OTHER
-- maps table and function keys and function values; other keys and
-- values are kept as they are without a call (copies run under the
-- budget's hook, where every instruction counts: an ip.parsed result is
-- copied for every address the role policy reads).
local function copy(root, map_value, map_other)
  local seen = { [root] = {} }
  local todo, n = { root }, 1
  while n > 0 do
    local t = todo[n]
    todo[n], n = nil, n - 1
    local c = seen[t]
    for k, v in raw_next, t do
      local tv = raw_type(v)
      if tv == "table" then
        local cv = seen[v]
        if cv == nil then
          cv = map_value(v)
          if cv == true then
            cv = {}
            seen[v], n = cv, n + 1
            todo[n] = v
          else
            seen[v] = cv
          end
        end
        v = cv
      elseif tv == "function" then
        v = map_other(v)
      end
      local tk = raw_type(k)
      if tk == "table" or tk == "function" then k = map_other(k) end
      c[k] = v
    end
  end
  return seen[root]
end

-- Host → policy: a function result. Tables are copied (the policy's own
-- from then on, and the host's memoised ip.parsed results stay intact;
-- copies read faster than views on the role policy's hot path); views
-- stay views, table keys become views, functions are wrapped.
local function copy_in_value(v) return host_of[v] and v or true end
local function outward_other(k) return outward(k, "a key") end
local function copy_in(v)
  local t = raw_type(v)
  if t == "table" then return host_of[v] and v or copy(v, copy_in_value, outward_other) end
  if t == "function" then return view_of[v] or wrap_fn(v) end
  return v
end

-- Policy → host: a hook's result. Views become the host's tables again;
-- the policy's tables are copied, so that reading them runs no policy
-- metamethod outside the budget.
local function copy_out_value(v) return host_of[v] or true end
local function copy_out(v)
  local t = raw_type(v)
  if t == "table" then return host_of[v] or copy(v, copy_out_value, inward) end
  return inward(v)
end

local function map_all(map, ...)
  local n = raw_select("#", ...)
  if n == 1 then return map((...)) end
  if n == 0 then return end
  local t = table.pack(...)
  for i = 1, t.n do t[i] = map(t[i]) end
  return table.unpack(t, 1, t.n)
end

-- A host function as the policy calls it: the host gets its own tables
-- back as arguments, the policy gets copies of the tables it returns.
wrap_fn = function(f)
  local w = function(...) return map_all(copy_in, f(inward_all(...))) end
  view_of[f], host_of[w] = w, f
  return w
end

-- ---- the sandbox ----

-- Modules a policy may require: pure helpers only.
local allowed_modules = { ["zmesh.ip"] = true }

-- pcall and xpcall that do not swallow a budget stop; other errors (a
-- refused write included) are caught as usual.
local function rethrow(ok, ...)
  if not ok and stop_message then error(stop_message, 0) end
  return ok, ...
end

-- Keys in one order every run: numbers, then strings, each ascending
-- (then the rest by type): the hash seed differs between processes, and
-- a policy that picks the first key of a pairs() loop must render the
-- same bytes every time.
local function key_before(a, b)
  local ta, tb = raw_type(a), raw_type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return b and not a end
  return false
end

local function stable_pairs(t)
  if raw_type(t) ~= "table" then return pairs(t) end
  -- A policy's own __pairs gives its own order.
  local mt = host_of[t] == nil and getmetatable(t)
  if raw_type(mt) == "table" and rawget(mt, "__pairs") ~= nil then return pairs(t) end
  local keys, k = {}, nil
  repeat
    k = view_next(t, k)
    keys[#keys + 1] = k
  until k == nil
  table.sort(keys, key_before)
  local i = 0
  return function()
    i = i + 1
    local key = keys[i]
    if key == nil then return nil end
    return key, t[key]
  end, t, nil
end

local base = {
  assert = assert, error = error, ipairs = ipairs, pairs = stable_pairs, select = select,
  tonumber = tonumber, tostring = tostring, type = type, rawequal = rawequal,
  next = view_next,
  pcall = function(...) return rethrow(pcall(...)) end,
  xpcall = function(...) return rethrow(xpcall(...)) end,
  rawget = function(t, k)
    local h = host_of[t]
    if h ~= nil and raw_type(h) == "table" then
      return outward(rawget(h, k), child_name(name_of[t], k))
    end
    return rawget(t, k)
  end,
  rawlen = function(v)
    local h = host_of[v]
    if h ~= nil and raw_type(h) == "table" then return rawlen(h) end
    return rawlen(v)
  end,
  rawset = function(t, k, v)
    if host_of[t] ~= nil then refuse(child_name(name_of[t], k)) end
    return rawset(t, k, v)
  end,
  -- Strings share one metatable, whose __index is the host's string
  -- library: a policy sees it read-only.
  getmetatable = function(v)
    if raw_type(v) == "table" then
      if host_of[v] ~= nil then return nil end
      return getmetatable(v)
    end
    local mt = getmetatable(v)
    if mt == nil then return nil end
    return outward(mt, string.format("getmetatable(%s)", raw_type(v) == "string" and '""' or raw_type(v)))
  end,
  -- A finaliser would run outside any budget, whenever the host collects.
  setmetatable = function(t, mt)
    if host_of[t] ~= nil then refuse(name_of[t]) end
    if raw_type(mt) == "table" and rawget(mt, "__gc") ~= nil then
      error(stopped_at() .. ": policies may not set a __gc metamethod", 0)
    end
    return setmetatable(t, mt)
  end,
}
-- Left out: string.dump (no use without load), math.randomseed (the
-- generator is the whole process's).
local dropped = { string = { dump = true }, math = { randomseed = true } }

local function sandbox()
  local env = {}
  for k, v in raw_next, base do env[k] = v end
  for _, lib in ipairs({ "math", "string", "table", "utf8" }) do
    local own = {}
    for k, v in pairs(_G[lib]) do
      if not (dropped[lib] and dropped[lib][k]) then own[k] = v end
    end
    env[lib] = own
  end
  env.require = function(name)
    if not allowed_modules[name] then
      error(string.format("policies may not require '%s'", tostring(name)), 2)
    end
    return outward(require(name), name)
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

-- The file NAME resolves to on OPTS.path and its text, or nil: what
-- a caller that keeps results per policy text keys them by.
function policy.source(name, opts)
  return find(name, policy.search_path(opts and opts.path))
end

-- ---- loaded policies ----

-- Policy record → { [hook] = { fn = the policy's function, handler =
-- its message handler, names = its parameters' names ("node", "req",
-- "ctx": the views' names in messages), file = the policy's file } }.
local entries = setmetatable({}, { __mode = "k" })

local function param_names(fn)
  local names = {}
  for i = 1, math.huge do
    local n = debug.getlocal(fn, i)
    if not n then break end
    names[i] = n
  end
  return setmetatable(names, { __index = function(_, i) return "argument " .. i end })
end

-- "file:line" of a policy's hook (or of the file when the hook is absent).
function policy.where(p, hook)
  local e = hook and entries[p] and entries[p][hook]
  if e and raw_type(e.fn) == "function" then
    local info = debug_getinfo(e.fn, "S")
    if info.what == "Lua" then return string.format("%s:%d", p._file, info.linedefined) end
  end
  return p._file
end

-- A contract breach: raises "file:line: policy NAME: hook HOOK: MESSAGE".
function policy.breach(p, hook, fmt, ...)
  error(one_line(string.format("%s: policy %s: %s%s", policy.where(p, hook), p.name,
    hook and ("hook " .. hook .. ": ") or "", string.format(fmt, ...))), 0)
end

-- A policy's value in a message, without running its __tostring.
local function show(v)
  local t = raw_type(v)
  if t == "string" or t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  return t
end

-- A runtime error in a hook keeps its own file:line and gains the
-- policy's name.
local function message_handler(name, hook)
  return function(e)
    return string.format("%s (in policy %s, hook %s)", policy_error(e), name, hook)
  end
end

-- Load policy NAME. contract.hooks lists the functions it must define.
-- opts.path: extra directories searched first. Returns the policy or nil
-- and a message naming the file and line.
--
-- The policy is a host record { name, version, _file, <hook> = … }, made
-- once: each function the file returned is there, called through
-- policy.call (so with the budget and the views).
function policy.load(name, contract, opts)
  opts = opts or {}
  if raw_type(name) ~= "string" or not name:match("^[%w_]+$") then
    return nil, string.format("invalid policy name '%s'", tostring(name))
  end
  local path = policy.search_path(opts.path)
  local file, src = find(name, path)
  if not file then
    return nil, string.format("policy '%s' not found in %s", name, table.concat(path, ":"))
  end
  if src == nil then return nil, file .. ": not a readable policy file (a directory?)" end
  sources["@" .. file] = true
  local chunk, err = load(src, "@" .. file, "t", sandbox())
  if not chunk then return nil, one_line(full_position(err)) end
  local h, mask, count = enter(file)
  local ok, p = xpcall(chunk, policy_error)
  leave(h, mask, count)
  if not ok then return nil, p end
  -- Raw reads only: the table is the policy's, its metamethods would run
  -- outside the budget.
  if raw_type(p) ~= "table" or host_of[p] ~= nil then
    return nil, string.format("%s: policy %s must return a table, got %s", file, name,
      host_of[p] ~= nil and "a host table" or raw_type(p))
  end
  local pname, version = rawget(p, "name"), rawget(p, "version")
  if pname ~= name then
    return nil, string.format("%s: policy name is '%s', expected '%s'", file, show(pname), name)
  end
  if raw_type(version) ~= "string" and raw_type(version) ~= "number" then
    return nil, string.format("%s: policy %s has no version", file, name)
  end
  for _, hook in ipairs((contract and contract.hooks) or {}) do
    if raw_type(rawget(p, hook)) ~= "function" then
      return nil, string.format("%s: policy %s must define function '%s'", file, name, hook)
    end
  end
  local rec = { name = name, version = version, _file = file }
  local per = {}
  for k, v in raw_next, p do
    if raw_type(k) == "string" and raw_type(v) == "function" then
      per[k] = { fn = v, handler = message_handler(name, k), names = param_names(v), file = file }
      rec[k] = function(...) return policy.call(rec, k, ...) end
    end
  end
  entries[rec] = per
  return rec
end

-- Restores the hook found on entry (as leave() does, inline: this is
-- the hot path), then hands the hook's results to the host.
local function finish(h, mask, count, ok, a, ...)
  if h == nil then sethook() elseif h ~= on_count then leave(h, mask, count) end
  if not ok then error(a, 0) end
  if raw_select("#", ...) == 0 then
    local t = raw_type(a)
    if t == "table" or t == "function" then return copy_out(a) end
    return a
  end
  return map_all(copy_out, a, ...)
end

local function call_packed(p, e, ...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = outward(t[i], e.names[i]) end
  local h, mask, count = enter(p._file)
  return finish(h, mask, count, xpcall(e.fn, e.handler, table.unpack(t, 1, t.n)))
end

-- Call HOOK of policy P (a record from policy.load) under the budget,
-- with views of its arguments; a runtime error in the policy keeps its
-- own file:line and gains the policy's name. Returns what the hook
-- returns, copied. Hot: the network tool calls role.endpoint for every
-- pair of public NRs, so one or two arguments pass without a table, and
-- enter() is inline.
function policy.call(p, hook, ...)
  local e = entries[p]
  e = e and e[hook]
  if not e then
    error(string.format("%s: policy %s has no hook %s", show(p and p._file), show(p and p.name), show(hook)), 2)
  end
  local n = raw_select("#", ...)
  if n > 2 then return call_packed(p, e, ...) end
  local a, b = ...
  -- Views exist for the tables of a render after the first call.
  local v = view_of[a]
  if v then a = v elseif n > 0 then a = outward(a, e.names[1]) end
  v = view_of[b]
  if v then b = v elseif n > 1 then b = outward(b, e.names[2]) end
  local h, mask, count = gethook()
  if h ~= on_count then arm(e.file) end
  if n == 2 then return finish(h, mask, count, xpcall(e.fn, e.handler, a, b)) end
  if n == 1 then return finish(h, mask, count, xpcall(e.fn, e.handler, a)) end
  return finish(h, mask, count, xpcall(e.fn, e.handler))
end

return policy
