-- How the one-shot commands reach the node: through the daemon when its
-- socket answers (so that it stays the only writer and its queue orders
-- every change), directly otherwise. `zmesh node` and `zmesh call` use
-- this; --direct and --daemon force either way.
local core = require "zmesh.core"
local entry = require "zmesh.entry"
local json = require "zmesh.json"

local client = {}

-- Entry areas that act on this node: the daemon runs them. The others
-- (net.*, the user side) never need it.
local NODE_AREAS = { node = true, nr = true, container = true }

-- An API call over the daemon's socket: ok, result | message; and
-- whether anybody answered (false: no daemon there).
function client.request(socket, method, path, body, timeout_ms)
  local status, text, err = core.http.request { socket = socket, method = method, path = path,
    body = body, headers = body and { ["Content-Type"] = "application/json" } or nil,
    timeout_ms = timeout_ms or 600000 }
  if not status then return false, tostring(text), false, err end
  local v = json.decode(text)
  if status >= 200 and status < 300 then return true, v, true end
  local msg = type(v) == "table" and v.error or text
  return false, string.format("%s (HTTP %d)", tostring(msg), status), true
end

-- The socket of the node config in use, or nil when there is none.
local function socket_of()
  local ok, ctx = pcall(require("zmesh.node.context").load)
  if ok then return ctx.cfg.socket end
end

-- Call entry NAME with PARAMS the way MODE says: "auto" (the daemon when
-- it answers), "daemon" (only through it), "direct" (never). Returns ok,
-- result | message, like entry.call.
function client.call(name, params, mode)
  mode = mode or "auto"
  local area = type(name) == "string" and name:match("^([%w_]+)%.")
  if mode == "direct" or not NODE_AREAS[area] then return entry.call(name, params) end
  local socket = socket_of()
  if socket then
    -- Parameters are an object, also an empty one (`{}` alone encodes as []).
    if params == nil or (next(params) == nil and json.kind(params) ~= "object") then
      params = json.object()
    end
    -- A read is answered at once by a live daemon: one that says nothing
    -- for 30 s (stopped, wedged) is not waited for; a change may queue.
    local wait = require("zmesh.daemon.api").READS[name] and 30000 or 600000
    local ok, res, answered = client.request(socket, "POST", "/v1/call/" .. name, json.encode(params), wait)
    if answered then return ok, res end
    if mode == "daemon" then return false, "no daemon answers on " .. socket .. ": " .. tostring(res) end
  elseif mode == "daemon" then
    return false, "no node config, so no daemon socket to use"
  end
  return entry.call(name, params)
end

-- Pull --direct / --daemon out of ARGS (in place); the mode they ask for.
function client.take_mode(args)
  local mode = "auto"
  for i = #args, 1, -1 do
    if args[i] == "--direct" then
      mode = "direct"
      table.remove(args, i)
    elseif args[i] == "--daemon" then
      mode = "daemon"
      table.remove(args, i)
    end
  end
  return mode
end

return client
