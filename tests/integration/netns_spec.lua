-- Named network namespaces against the real kernel, checked with iproute2.
local core = require "zmesh.core"
local testns = require "testns"

describe("netns", function()
  after_each(function() assert(testns.cleanup()) end)

  it("creates a namespace that `ip netns` sees and can run commands in", function()
    local name = testns.name("a")
    assert.is_true(core.netns.create(name))
    assert.is_true(core.netns.exists(name))
    local out, ok = testns.sh("ip netns list")
    assert.is_true(ok)
    assert.matches(name, out, 1, true)
    out, ok = testns.exec(name, "ip -o link show")
    assert.is_true(ok)
    assert.matches("1: lo:", out, 1, true)
    local listed = false
    for _, n in ipairs(core.netns.list()) do listed = listed or n == name end
    assert.is_true(listed)
  end)

  it("refuses to create one that exists", function()
    local name = testns.name("dup")
    assert(core.netns.create(name))
    local ok, err, ename = core.netns.create(name)
    assert.is_nil(ok)
    assert.equal("EEXIST", ename)
    assert.matches("namespace '" .. name .. "' already exists", err, 1, true)
  end)

  it("deletes a namespace and ends the processes left inside it", function()
    local name = testns.name("procs")
    assert(core.netns.create(name))
    local out = testns.sh("ip netns exec " .. name .. " sleep 300 >/dev/null 2>&1 & echo $!")
    local pid = assert(tonumber(out))
    local pids
    for _ = 1, 100 do
      pids = core.netns.pids(name)
      if #pids > 0 then break end
      testns.sh("sleep 0.02")
    end
    assert.same({ pid }, pids)
    assert.is_true(core.netns.delete(name, 1000))
    assert.is_false(core.netns.exists(name))
    testns.sh("wait")
    local _, alive = testns.sh("kill -0 " .. pid)
    -- Gone, or a zombie waiting for its (shell) parent, but not running.
    local state = testns.sh("cat /proc/" .. pid .. "/stat 2>/dev/null | awk '{print $3}'")
    assert.is_true(not alive or state == "Z", "process " .. pid .. " still runs")
    local list = testns.sh("ip netns list")
    assert.not_matches(name, list, 1, true)
  end)

  it("does not leave the calling thread in another namespace", function()
    local name = testns.name("own")
    local function here() return assert(core.fs.readlink("/proc/thread-self/ns/net")) end
    local before = here()
    assert(core.netns.create(name))
    local h <close> = assert(core.netns.open(name))
    assert(core.link.bridge { ns = h, name = "br0" })
    assert(core.link.dump(name))
    assert(core.addr.dump(name))
    assert(core.route.dump(name))
    assert(core.sysctl.set(name, "net.ipv4.ip_forward", 1))
    assert.equal(before, here())
    -- What was made inside is inside, not here.
    assert.truthy(core.link.get(name, "br0"))
    assert.is_nil(core.link.get(nil, "br0"))
  end)

  it("fails cleanly on a missing namespace", function()
    local ok, err, ename = core.netns.delete(testns.name("missing"))
    assert.is_nil(ok)
    assert.equal("ENOENT", ename)
    assert.matches("does not exist", err, 1, true)
  end)
end)
