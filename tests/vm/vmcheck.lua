-- Checks for scripts that run inside the test VM (tests/vm/run.sh).
-- Each check prints one line the host-side spec reads back:
--   "ok - NAME" or "not ok - NAME: WHY", and "# …" for notes.
-- check.done() prints the tally and returns the exit status (0: all ok).
local M = { passed = 0, failed = 0, names = {} }

local function line(s)
  io.stdout:write(s, "\n")
  io.stdout:flush()
end

function M.note(fmt, ...)
  line("# " .. string.format(fmt, ...))
end

-- Run fn(); it fails by raising (expect, eq, or any error).
function M.check(name, fn)
  assert(not M.names[name], "duplicate check name " .. name)
  M.names[name] = true
  local ok, err = xpcall(fn, function(e)
    if type(e) == "table" and e.vmcheck then return e.msg end
    return debug.traceback(tostring(e), 2)
  end)
  if ok then
    M.passed = M.passed + 1
    line("ok - " .. name)
  else
    M.failed = M.failed + 1
    line("not ok - " .. name .. ": " .. tostring(err):gsub("\n", "\n#   "))
  end
  return ok
end

local function fail(msg) error({ vmcheck = true, msg = msg }, 0) end

function M.expect(cond, fmt, ...)
  if not cond then fail(string.format(fmt or "expectation failed", ...)) end
  return cond
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function M.eq(got, want, what)
  if got ~= want then
    fail(string.format("%s: got %s, want %s", what or "value", show(got), show(want)))
  end
end

-- A raised error whose message contains every pattern (plain text).
function M.raises(fn, ...)
  local ok, err = pcall(fn)
  if ok then fail("expected an error, got none") end
  err = tostring(err)
  for _, want in ipairs({ ... }) do
    if not err:find(want, 1, true) then
      fail(string.format("error %q does not mention %q", err, want))
    end
  end
  return err
end

-- nil, "ENAME: …" from a core call, with ENAME and the text checked.
function M.fails(ename, texts, v, err, name)
  if v ~= nil then fail("expected " .. ename .. ", got success") end
  if name ~= ename then fail(string.format("expected %s, got %s (%s)", ename, show(name), show(err))) end
  for _, want in ipairs(texts or {}) do
    if not tostring(err):find(want, 1, true) then
      fail(string.format("error %q does not mention %q", tostring(err), want))
    end
  end
  return err
end

-- Run a shell command: output (trailing space trimmed), success.
function M.sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local ok = f:close()
  return (out:gsub("%s+$", "")), ok == true
end

-- iproute2's ip by its path: the VM's shell is busybox, whose own applets
-- (ip, ping) win over PATH; commands that ip execs are found in PATH.
M.IP = (os.getenv("ZMESH_VM_TOOLS") or "/usr/sbin") .. "/ip"

-- Run CMD inside a named namespace; raises when the command fails.
function M.nsx(ns, cmd)
  local out, ok = M.sh(M.IP .. " netns exec " .. ns .. " " .. cmd)
  if not ok then fail(string.format("'%s' in %s failed: %s", cmd, ns, out)) end
  return out
end

function M.now_ms()
  local f = io.open("/proc/uptime")
  local up = f and f:read("n") or 0
  if f then f:close() end
  return math.floor(up * 1000)
end

function M.done()
  line(string.format("vm checks: %d ok, %d not ok", M.passed, M.failed))
  return M.failed == 0 and 0 or 1
end

return M
