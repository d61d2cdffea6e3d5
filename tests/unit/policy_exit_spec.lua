-- The default exit policy, and how the network tool reports policies
-- that fail to load or break their contracts: file and line, nothing
-- rendered.
local fake = require("fake_keys").install()
local net = require "zmesh.net"
local policy = require "zmesh.policy"
local build = dofile("tests/fixtures/net/build.lua")

local dir = "tests/fixtures/net/policies/"

describe("policy exit", function()
  local exit = assert(policy.load("exit", { hooks = { "exit" } }))
  it("keeps the user's choice", function()
    assert.equal("n2", exit.exit({ chosen = "n2", nodes = { { node_id = "n2", role = "public" } } }))
    assert.is_nil(exit.exit({ nodes = {} }))
  end)
end)

describe("net policies", function()
  local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)

  local function fails(sub, msg)
    local ok, err = pcall(net.render, n, "n1", { policy_dir = dir .. sub })
    assert.is_false(ok)
    assert.equal(msg, err)
  end

  it("report a syntax error with file and line", function()
    fails("syntax", dir .. "syntax/role.lua:3: '}' expected (to close '{' at line 2) near 'end'")
  end)

  it("report a runtime error with file and line", function()
    fails("raises", dir .. "raises/role.lua:5: no role for n1 (in policy role, hook role)")
  end)

  it("report a missing version", function()
    fails("noversion", dir .. "noversion/exit.lua: policy exit has no version")
  end)

  it("report contract breaches with file and line", function()
    fails("badrole", dir .. 'badrole/role.lua:4: policy role: hook role: node n1: returned maybe, expected "public" or "hidden"')
    fails("badagg", dir .. "badagg/aggregator.lua:4: policy aggregator: hook aggregators: gave n3 aggregator nobody, not a public NR")
    fails("lazyagg", dir .. "lazyagg/aggregator.lua:4: policy aggregator: hook aggregators: gave n3 no aggregator")
    fails("badexit", dir .. "badexit/exit.lua:4: policy exit: hook exit: returned elsewhere, not an NR of the network")
  end)

  it("report a subnet policy's breach on add-node, changing nothing", function()
    local ok, err = pcall(net.add_node, n, (build.facts("n9", "pub4", fake)), { policy_dir = dir .. "badsubnet" })
    assert.is_false(ok)
    assert.equal(dir .. "badsubnet/subnet.lua:4: policy subnet: hook subnet: subnet 192.168.99.0/24 is not a /24 inside 10.1.0.0/16", err)
  end)

  it("are searched in policy_dir, then $ZMESH_POLICY_PATH, then the defaults", function()
    local path = policy.search_path({ "/a", "/b" })
    assert.equal("/a", path[1])
    assert.equal("/b", path[2])
    assert.equal(policy.default_dir, path[#path])
    -- a directory holding only role.lua overrides role and nothing else
    local set = net.policies({ policy_dir = dir .. "badrole" })
    assert.equal(dir .. "badrole/role.lua", set.role._file)
    assert.equal(policy.default_dir .. "/subnet.lua", set.subnet._file)
  end)
end)
