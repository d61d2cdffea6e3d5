-- The daemon's HTTP API, as routes: a request (method, path, query, body
-- text) becomes either a read, answered at once from the node as it is,
-- or a job for the one queue (an entry point and its parameters). Pure:
-- no sockets, no kernel; the daemon carries the answer out.
--
--   GET    /v1/node                          node facts
--   GET    /v1/status                        the daemon's view: NRs, last converge, queue
--   GET    /v1/nrs                           every NR on the node
--   GET    /v1/nrs/{net_id}                  one NR (WireGuard peers, links, routes)
--   PUT    /v1/nrs/{net_id}[?dry_run=1]      apply an NR config (body), or its plan
--   DELETE /v1/nrs/{net_id}[?dry_run=1]      remove it, or the plan of that
--   PUT    /v1/nrs/{net_id}/containers/{netns}[?dry_run=1]   attach (body {ip, ip6, create}), or its plan
--   DELETE /v1/nrs/{net_id}/containers/{netns}[?delete=1&dry_run=1]
--   POST   /v1/call/{entry}                  any named entry point (body: its parameters)
--   GET    /metrics                          Prometheus text
--
-- Errors are JSON {"error": "…", "field": "…"}: 400 bad input, 404 no such
-- thing, 405 wrong method, 409 a conflict (a listen port in use), 500 a
-- system failure. A 4xx changes nothing.
local check = require "zmesh.check"
local entry = require "zmesh.entry"
local json = require "zmesh.json"
local names = require "zmesh.node.names"

local api = {}

-- Entry points that only read: answered outside the queue, so that they
-- never wait behind a long apply.
api.READS = {
  ["node.facts"] = true, ["node.status"] = true, ["nr.list"] = true, ["nr.status"] = true,
}

local STATUS = { input = 400, not_found = 404, conflict = 409 }

-- An error answer: status, {error, field}.
function api.error(status, message, field)
  return { status = status, body = { error = message, field = field } }
end

-- The answer for an entry point's failure MESSAGE, by what raised it.
function api.failure(message, class)
  class = class or check.classify(message)
  if class then return api.error(STATUS[class.kind] or 400, message, class.field) end
  return api.error(500, message)
end

local function flag(query, key)
  local v = query and query[key]
  return v == "1" or v == "true" or v == "yes"
end

-- The request body as a JSON object (an empty body is {} when ALLOW_EMPTY).
local function body_object(body, allow_empty)
  if body == nil or body == "" then
    if allow_empty then return json.object() end
    return nil, api.error(400, "the request needs a JSON object as its body")
  end
  local v, err = json.decode(body)
  if v == nil then return nil, api.error(400, "body: " .. tostring(err)) end
  if type(v) ~= "table" or json.kind(v) == "array" then
    return nil, api.error(400, "body: must be a JSON object")
  end
  return v
end

local function net_id_of(id)
  if not names.valid_net_id(id) then
    return nil, api.error(400, string.format("net_id %s: must be 1..12 of a-z 0-9", check.show(id)), "net_id")
  end
  return id
end

local function job(entry_name, params, shape)
  return { job = { entry = entry_name, params = params }, shape = shape }
end

local function read(entry_name, params, shape)
  return { read = { entry = entry_name, params = params }, shape = shape }
end

local routes = {}

routes[#routes + 1] = { "^/v1/node$", { GET = function() return read("node.facts", json.object()) end } }
routes[#routes + 1] = { "^/v1/status$", { GET = function() return { status_view = true } end } }
routes[#routes + 1] = { "^/metrics$", { GET = function() return { metrics_view = true } end } }
routes[#routes + 1] = { "^/v1/nrs$", { GET = function() return read("nr.list", json.object()) end } }

routes[#routes + 1] = { "^/v1/nrs/([^/]+)$", {
  GET = function(r, id)
    local net_id, err = net_id_of(id)
    if not net_id then return err end
    return read("nr.status", { net_id = net_id })
  end,
  PUT = function(r, id)
    local net_id, err = net_id_of(id)
    if not net_id then return err end
    local cfg
    cfg, err = body_object(r.body)
    if not cfg then return err end
    if cfg.net_id ~= nil and cfg.net_id ~= net_id then
      return api.error(400, string.format("net_id %s: the body is for another NR than %s",
        check.show(cfg.net_id), net_id), "net_id")
    end
    cfg.net_id = net_id
    if flag(r.query, "dry_run") then return job("nr.plan", cfg) end
    return job("nr.apply", cfg)
  end,
  DELETE = function(r, id)
    local net_id, err = net_id_of(id)
    if not net_id then return err end
    local dry = flag(r.query, "dry_run")
    return job("nr.remove", { net_id = net_id, dry_run = dry or nil }, function(res)
      -- A plan with nothing to remove is the same "no such NR" as a removal.
      if (dry and #res.changes == 0) or (not dry and res.removed == false) then
        return api.error(404, "net_id '" .. net_id .. "': no such NR on this node", "net_id")
      end
    end)
  end,
} }

routes[#routes + 1] = { "^/v1/nrs/([^/]+)/containers/([^/]+)$", {
  PUT = function(r, id, netns)
    local net_id, err = net_id_of(id)
    if not net_id then return err end
    local p
    p, err = body_object(r.body)
    if not p then return err end
    if p.net_id ~= nil or p.netns ~= nil then
      return api.error(400, "body: net_id and netns come from the path", p.net_id and "net_id" or "netns")
    end
    p.net_id, p.netns = net_id, netns
    if flag(r.query, "dry_run") then p.dry_run = true end
    return job("container.attach", p)
  end,
  DELETE = function(r, id, netns)
    local net_id, err = net_id_of(id)
    if not net_id then return err end
    local dry = flag(r.query, "dry_run")
    return job("container.detach", { net_id = net_id, netns = netns,
      delete = flag(r.query, "delete") or nil, dry_run = dry or nil }, function(res)
      if (dry and res.attached == false and #res.changes == 0) or (not dry and res.detached == false) then
        return api.error(404, string.format("netns %s: not attached to NR %s", check.show(netns), net_id),
          "netns")
      end
    end)
  end,
} }

routes[#routes + 1] = { "^/v1/call/([^/]+)$", {
  POST = function(r, name)
    if not entry.resolve(name) then
      return api.error(404, string.format("unknown entry point %s (GET /v1/call for the list)",
        check.show(name)))
    end
    local params, err = body_object(r.body, true)
    if not params then return err end
    if api.READS[name] then return read(name, params) end
    return job(name, params)
  end,
} }

routes[#routes + 1] = { "^/v1/call$", {
  GET = function() return { list_view = true } end,
} }

-- R: {method, path, query = {…}, body = text}. Returns one of
--   {read = {entry, params}, shape}  answer now from the node
--   {job = {entry, params}, shape}   queue it; shape(result) may turn a
--                                    result into an error answer
--   {status_view | metrics_view | list_view = true}
--   {status, body}                   an answer already (an error)
function api.route(r)
  local path = r.path or ""
  for _, route in ipairs(routes) do
    local caps = table.pack(path:match(route[1]))
    if caps[1] ~= nil then
      local handler = route[2][r.method]
      if not handler then
        local allowed = {}
        for m in pairs(route[2]) do allowed[#allowed + 1] = m end
        table.sort(allowed)
        local ans = api.error(405, string.format("%s is not allowed on %s (allowed: %s)", tostring(r.method),
          path, table.concat(allowed, ", ")))
        ans.headers = { Allow = table.concat(allowed, ", ") }
        return ans
      end
      return handler(r, table.unpack(caps, 1, caps.n))
    end
  end
  return api.error(404, "no such resource: " .. path)
end

return api
