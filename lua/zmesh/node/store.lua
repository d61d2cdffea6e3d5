-- Durable desired state, in state_dir (it survives reboots, unlike
-- run_dir): every applied NR config and every container attachment, one
-- JSON file per NR in each of two directories:
--
--   state_dir/nrs/<net_id>.json         {"format": 1, "kind": "nr", "data": <NR config>}
--   state_dir/containers/<net_id>.json  {"format": 1, "kind": "containers",
--                                        "data": {<netns>: {netns, ip, ip6, port}}}
--
-- NR configs hold only sealed keys. Files are written atomically (a
-- temporary, fsync, rename, fsync of the directory) with mode 0600. A file
-- that does not parse, or is not of this format, is reported and set
-- aside (renamed to <file>.corrupt): it never stops the node.
local core = require "zmesh.core"
local json = require "zmesh.json"

local store = {}

store.FORMAT = 1

local DIR_MODE, FILE_MODE = tonumber("700", 8), tonumber("600", 8)

local function set_aside(path, why, problems)
  local ok, err = os.rename(path, path .. ".corrupt")
  problems[#problems + 1] = string.format("%s: %s (%s)", path, why,
    ok and ("set aside as " .. path .. ".corrupt") or ("cannot set it aside: " .. tostring(err)))
end

-- The data of one file, or nil and why it is not one of ours.
local function decode(path, kind)
  local doc, err = json.read_file(path)
  if doc == nil then
    err = tostring(err)
    if err:sub(1, #path + 2) == path .. ": " then err = err:sub(#path + 3) end
    return nil, err
  end
  if type(doc) ~= "table" or json.kind(doc) == "array" then return nil, "not a JSON object" end
  if doc.format ~= store.FORMAT then
    return nil, string.format("format %s, this zmesh reads format %d", tostring(doc.format), store.FORMAT)
  end
  if doc.kind ~= kind then return nil, string.format("kind %s, expected %s", tostring(doc.kind), kind) end
  if type(doc.data) ~= "table" then return nil, "no data" end
  return doc.data
end

-- What this process decoded, by path: {ino, mtime_ns, size, kind, data}.
-- A long-lived writer (the daemon's) reads every stored NR per apply (the
-- listen-port check); decoding 200 files each time made an apply cost
-- O(NRs). Every write is a rename, so a changed file has a new inode.
local cache = {}

-- Callers may change what they get without changing the cache.
local copy = json.copy

-- As read_all's FIELD: the data's keys, a set ({key → true}), no copy.
store.KEYS = {}

-- What FIELD wants of DATA (no copy): data[FIELD] (a scalar) or false,
-- or with store.KEYS the set of its keys.
local function part(data, field)
  if field == store.KEYS then
    local set = {}
    for k in pairs(data) do set[k] = true end
    return set
  end
  return data[field] ~= nil and data[field] or false
end

local function cached_decode(path, kind, field)
  local st = core.fs.stat(path)
  local hit = cache[path]
  if st and st.mtime_ns and hit and hit.ino == st.ino and hit.mtime_ns == st.mtime_ns
      and hit.size == st.size and hit.kind == kind then
    if field then return part(hit.data, field) end
    return copy(hit.data)
  end
  cache[path] = nil
  local data, why = decode(path, kind)
  if data and st and st.mtime_ns then
    cache[path] = { ino = st.ino, mtime_ns = st.mtime_ns, size = st.size, kind = kind, data = copy(data) }
  end
  if data and field then return part(data, field) end
  return data, why
end

-- Every <id>.json of KIND in DIR: {id → data}, or with FIELD {id →
-- data[FIELD] or false} (store.KEYS: {id → set of data's keys}). PROBLEMS (a list) gets a line for each file set
-- aside.
function store.read_all(dir, kind, problems, field)
  local out = {}
  for _, file in ipairs(core.fs.list(dir) or {}) do
    local id = file:match("^([a-z0-9]+)%.json$")
    if id then
      local path = dir .. "/" .. file
      local data, why = cached_decode(path, kind, field)
      if data ~= nil then out[id] = data else set_aside(path, why, problems) end
    end
  end
  return out
end

-- One file: its data, nil when absent; a bad one is set aside (and nil).
function store.read(path, kind, problems)
  if not core.fs.stat(path) then return nil end
  local data, why = cached_decode(path, kind)
  if data then return data end
  set_aside(path, why, problems)
  return nil
end

-- OPTS.unless_same: leave a file that already says the same alone (the
-- reconcile loop re-applies every few seconds: no fsync for nothing).
function store.write(path, kind, data, opts)
  local text = json.encode({ format = store.FORMAT, kind = kind, data = data }, { pretty = true }) .. "\n"
  if opts and opts.unless_same then
    local f = io.open(path, "r")
    local old = f and f:read("a")
    if f then f:close() end
    if old == text then return end
  end
  local dir = path:match("^(.*)/[^/]+$")
  local ok, err = core.fs.mkdir(dir, DIR_MODE)
  if ok then ok, err = core.fs.write(path, text, FILE_MODE) end
  if not ok then error(err, 0) end
end

function store.remove(path)
  local ok, err, ename = core.fs.remove(path)
  if not ok and ename ~= "ENOENT" then error(err, 0) end
end

return store
