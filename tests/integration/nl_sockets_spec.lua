-- The netlink layer keeps one socket per namespace and protocol (core/nl.h),
-- and a socket keeps its namespace alive. So: a namespace made again under
-- an old name is never served the old socket, and a namespace deleted (by
-- zmesh or by anyone else) is not kept alive by zmesh's sockets. Seen from
-- a witness namespace holding the other end of a veth: the end goes when,
-- and only when, the namespace behind the deleted name is really gone.
local core = require "zmesh.core"
local testns = require "testns"

local function sh(cmd) return testns.must(cmd) end

local function has_link(ns, name)
  for _, l in ipairs(assert(core.link.dump(ns))) do
    if l.name == name then return true end
  end
  return false
end

-- True once COND holds, polled for up to 20 s: the kernel frees a deleted
-- namespace from a work queue, after RCU grace periods, which a loaded
-- machine that has just deleted many namespaces can stretch to seconds.
local function eventually(cond)
  for _ = 1, 2000 do
    if cond() then return true end
    os.execute("sleep 0.01")
  end
  return false
end

local describe_root = (testns.sh("id -u") == "0") and describe or pending

describe_root("netlink sockets kept per namespace", function()
  local W, A

  before_each(function()
    W, A = testns.name("nl-w"), testns.name("nl-a")
    assert(core.netns.create(W))
    assert(core.netns.create(A))
    -- The witness's end "wa" lives as long as A's namespace does.
    assert(core.link.veth { ns = W, name = "wa", peer = "aw", peer_ns = A })
  end)

  after_each(function()
    local ok, err = testns.cleanup()
    assert(ok, err)
  end)

  -- Netlink sockets of this process that live in namespace NS (by inode).
  local function ours_in(ns)
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("n")
    f:close()
    local mine, n = {}, 0
    local p = io.popen("ls -l /proc/" .. pid .. "/fd")
    for line in p:lines() do
      local inode = line:match("socket:%[(%d+)%]")
      if inode then mine[inode] = true end
    end
    p:close()
    p = io.popen("ip netns exec " .. ns .. " cat /proc/net/netlink")
    for line in p:lines() do
      if mine[line:match("(%d+)%s*$") or ""] then n = n + 1 end
    end
    p:close()
    return n
  end

  it("are kept: calls by name use one socket in the namespace, not one each", function()
    assert.equals(0, ours_in(A))
    assert.is_true(has_link(A, "aw"))
    assert.equals(1, ours_in(A))
    for _ = 1, 20 do assert.is_true(has_link(A, "aw")) end
    assert.equals(1, ours_in(A))
  end)

  it("go with a namespace zmesh deletes", function()
    assert.is_true(has_link(A, "aw")) -- a socket in A now
    assert(core.netns.delete(A))
    assert.is_true(eventually(function() return not has_link(W, "wa") end),
      "the veth end in the witness stayed: A is kept alive")
  end)

  it("go with a namespace someone else deletes, and a new one under the name is served anew", function()
    assert.is_true(has_link(A, "aw"))
    sh("ip netns delete " .. A)
    -- The next call by any name lets the old namespace go …
    assert.is_true(eventually(function() return not has_link(W, "wa") end),
      "the veth end in the witness stayed: A is kept alive")
    -- … and the same name, made again, is the new namespace.
    sh("ip netns add " .. A)
    sh("ip -n " .. A .. " link add fresh type bridge")
    assert.is_true(has_link(A, "fresh"))
    assert.is_false(has_link(A, "aw"))
  end)
end)
