-- One writer at a time on a node. Every call that changes the node's
-- kernel state (node start and stop, NR apply, remove and check, container
-- attach and detach) runs holding an exclusive lock on run_dir/lock, so
-- that one-shot commands and the daemon exclude each other: allocations
-- (uplink addresses, container link names) read what exists and then make
-- it, and must not interleave. The kernel drops the lock with its holder,
-- also when that is killed.
local core = require "zmesh.core"

local lock = {}

-- How long a writer waits for another one before giving up.
lock.TIMEOUT_MS = 120000

local held, depth = nil, 0

function lock.path(ctx) return ctx.cfg.run_dir .. "/lock" end

-- Run FN(...) holding the node lock and return what it returns; the lock
-- is released however FN ends. Re-entrant: nr.check applies NRs, node.stop
-- removes them, under the one lock taken first.
function lock.hold(ctx, fn, ...)
  if depth > 0 then
    depth = depth + 1
    local res = table.pack(pcall(fn, ...))
    depth = depth - 1
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end
  local ok, err = core.fs.mkdir(ctx.cfg.run_dir, tonumber("755", 8))
  if not ok then error(err, 0) end
  local handle, lerr, ename = core.fs.lock(lock.path(ctx), lock.TIMEOUT_MS)
  if not handle then
    if ename == "EAGAIN" then
      error(string.format("this node is busy: another zmesh has held %s for %d s",
        lock.path(ctx), lock.TIMEOUT_MS // 1000), 0)
    end
    error(lerr, 0)
  end
  held, depth = handle, 1
  local res = table.pack(pcall(fn, ...))
  held, depth = nil, 0
  handle:close()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- Whether this process holds the lock now (for asserts in callers).
function lock.holding() return held ~= nil end

return lock
