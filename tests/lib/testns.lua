-- Names unique to one test run, and cleanup of everything made under them.
-- Every namespace a test makes is named testns.name(tag), so that
-- testns.cleanup() (call it from `finally` or teardown) finds them all,
-- also after a failure half-way.
local core = require "zmesh.core"

local testns = {}

local function hex(n) return string.format("%x", n) end

-- Short: interface names derived from it must stay within 15 characters.
testns.run_id = os.getenv("ZMESH_TEST_RUN") or
  (hex(math.random(0x100, 0xfff)) .. hex(tonumber(tostring({}):match("0x(%x+)"), 16) % 0xfff))

local prefix = "zt" .. testns.run_id .. "-"

-- "zt<run>-<tag>": a namespace name owned by this run.
function testns.name(tag) return prefix .. tag end

-- Is NAME one of this run's?
function testns.owns(name) return name:sub(1, #prefix) == prefix end

-- Delete every namespace of this run (their processes end with them).
function testns.cleanup()
  local left = {}
  for _, name in ipairs(core.netns.list() or {}) do
    if testns.owns(name) then
      local ok, err = core.netns.delete(name, 500)
      if not ok then left[#left + 1] = err end
    end
  end
  return #left == 0, table.concat(left, "; ")
end

-- Names of this run's namespaces still present.
function testns.leftovers()
  local out = {}
  for _, name in ipairs(core.netns.list() or {}) do
    if testns.owns(name) then out[#out + 1] = name end
  end
  return out
end

-- Run a shell command, return its stdout (trimmed), and whether it exited 0.
function testns.sh(cmd)
  local f = io.popen(cmd .. " 2>&1")
  local out = f:read("a")
  local ok = f:close()
  return (out:gsub("%s+$", "")), ok == true
end

-- Run a shell command that must succeed; its output, or an error naming it.
function testns.must(cmd)
  local out, ok = testns.sh(cmd)
  if not ok then error(cmd .. ": " .. out, 2) end
  return out
end

-- `ip netns exec NS CMD…` as one string.
function testns.exec(ns, cmd)
  return testns.sh("ip netns exec " .. ns .. " " .. cmd)
end

return testns
