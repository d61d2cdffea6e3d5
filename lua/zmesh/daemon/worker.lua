-- The daemon's writer: a child process that runs the queue's jobs one at
-- a time, in order, each an entry point (`nr.apply`, `node.converge`, …).
-- One JSON line in per job, {"id", "entry", "params"}; one line out,
-- {"id", "ok", "result"} or {"id", "ok": false, "error", "kind", "field"}.
-- Being a process of its own, a long apply never holds up the daemon's
-- reads, and a crash in it is a failed job, not a dead daemon. Every job
-- takes the node lock, as the one-shot commands do.
local check = require "zmesh.check"
local context = require "zmesh.node.context"
local entry = require "zmesh.entry"
local json = require "zmesh.json"

local worker = {}

-- Not an entry point: what the daemon sends its writer on SIGHUP.
worker.REPIN = "worker:repin"

-- The reply line for one job line.
function worker.handle(line)
  local job, err = json.decode(line)
  if type(job) ~= "table" or type(job.entry) ~= "string" then
    return { id = type(job) == "table" and job.id or json.null, ok = false,
      error = "bad job: " .. tostring(err or line), kind = "input" }
  end
  check.last = nil
  -- The node config in force (the daemon's first job, and after each
  -- SIGHUP that found the file good): jobs after this one use it.
  if job.entry == worker.REPIN then
    if type(job.params) ~= "table" or type(job.params.config) ~= "table" then
      return { id = job.id, ok = false, error = "bad job: no config to run on", kind = "input" }
    end
    context.pin(job.params.config)
    return { id = job.id, ok = true, result = json.null }
  end
  local ok, result = entry.call(job.entry, job.params or json.object())
  if ok then return { id = job.id, ok = true, result = result == nil and json.null or result } end
  local class = check.classify(result)
  return { id = job.id, ok = false, error = result, kind = class and class.kind,
    field = class and class.field }
end

-- Serve jobs from INPUT until it closes (the daemon went away).
function worker.run(input, output)
  for line in input:lines() do
    if line ~= "" then
      local ok, reply = pcall(worker.handle, line)
      if not ok then reply = { ok = false, error = "worker: " .. tostring(reply) } end
      local encoded_ok, text = pcall(json.encode, reply)
      if not encoded_ok then
        text = json.encode({ id = reply.id, ok = false, error = "worker: result not JSON: " .. text })
      end
      output:write(text, "\n")
      output:flush()
    end
  end
end

return worker
