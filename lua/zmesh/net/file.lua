-- Reading and writing a network file. Writes go to a temporary file in the
-- same directory, then rename over the old one, so that a crash or a full
-- disk never leaves half a network. The file holds public keys and keys
-- sealed to their nodes only, so it needs no special mode (umask applies).
local json = require "zmesh.json"
local model = require "zmesh.net.model"

local file = {}

-- The network in PATH; raises "PATH: message".
function file.load(path)
  if type(path) ~= "string" or path == "" then
    error("file: a network file path is required", 0)
  end
  local net, err = json.read_file(path)
  if net == nil then error(err, 0) end
  if type(net) ~= "table" or net[1] ~= nil then
    error(path .. ": not a network (expected a JSON object)", 0)
  end
  return model.normalise(net)
end

-- Arrays that may be empty must stay arrays in JSON.
local function marked(net)
  local out = model.copy(net)
  out.nodes = json.array(out.nodes)
  if out.access then out.access = json.array(out.access) end
  for _, n in ipairs(out.nodes) do
    if n.aggregators then n.aggregators = json.array(n.aggregators) end
    local f = n.facts
    if f then
      f.addresses = json.array(f.addresses or {})
      if f.public_endpoints then f.public_endpoints = json.array(f.public_endpoints) end
    end
  end
  return out
end

function file.encode(net)
  return json.encode(marked(net), { pretty = true }) .. "\n"
end

-- Write NET to PATH atomically; raises on failure. NEW: refuse to
-- overwrite an existing file.
function file.save(net, path, opts)
  if opts and opts.new then
    local f = io.open(path, "r")
    if f then
      f:close()
      error(string.format("file: '%s' already exists", path), 0)
    end
  end
  local text = file.encode(net)
  local tmp = string.format("%s.tmp%d", path, math.random(100000, 999999))
  local f, err = io.open(tmp, "w")
  -- Named by the user's path: the temporary is ours.
  if not f then error("file: " .. path .. ": " .. tostring(err):gsub("^.-: ", ""), 0) end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    error("file: writing " .. path .. ": " .. tostring(werr or cerr), 0)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    error("file: " .. tostring(rerr), 0)
  end
end

return file
