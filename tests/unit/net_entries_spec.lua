-- The net.* entry points, as `zmesh call` and provisioning use them: one
-- JSON object in, a result table out, the network file written atomically.
local fake = require("fake_keys").install()
local entry = require "zmesh.entry"
local json = require "zmesh.json"
local build = dofile("tests/fixtures/net/build.lua")

local dir, file

local function call(name, params)
  local ok, result = entry.call(name, params)
  return ok, result
end

local function must(name, params)
  local ok, result = call(name, params)
  assert(ok, name .. ": " .. tostring(result))
  return result
end

local read = build.read

local function listing()
  local p = io.popen("ls -A " .. dir)
  local names = p:read("a")
  p:close()
  return names
end

describe("net entry points", function()
  before_each(function()
    dir = build.tmpdir()
    file = dir .. "/net.json"
  end)
  after_each(function() build.rmdir(dir) end)

  it("are all listed with a description", function()
    local names = {}
    for _, e in ipairs(entry.list()) do
      if e.name:match("^net%.") then
        names[#names + 1] = e.name
        assert.is_true(#e.summary > 10)
      end
    end
    assert.same({ "net.add-access", "net.add-node", "net.check", "net.expose", "net.graph", "net.graph-live",
      "net.nats-config", "net.nats-facts", "net.new", "net.publish", "net.remove-access", "net.remove-node",
      "net.render", "net.set-exit", "net.set-routed-ipv6", "net.show", "net.unexpose", "net.validate" }, names)
  end)

  it("run a network's whole life through files", function()
    local r = must("net.new", { file = file, name = "demo", ip_range = "10.1.0.0/16", net_id = "demo1" })
    assert.equal("demo1", r.net_id)
    assert.equal(1, json.decode(read(file)).format)
    for i, kind in ipairs({ "pub4", "pub46", "hid4" }) do
      local facts = build.facts("n" .. i, kind, fake)
      if i == 2 then
        local ff = dir .. "/facts.json"
        local f = io.open(ff, "w") f:write(json.encode(facts)) f:close()
        r = must("net.add-node", { file = file, facts_file = ff })
      else
        r = must("net.add-node", { file = file, facts = facts })
      end
      assert.equal(string.format("10.1.%d.0/24", i), r.subnet)
    end
    assert.equal("n2", must("net.set-exit", { file = file, node = "n2" }).exit)
    local a = must("net.add-access", { file = file, name = "laptop" })
    assert.matches("^# zmesh: device laptop", a.config)
    local c = must("net.render", { file = file, node = "n3" })
    assert.equal("n3", c.node_id)
    assert.equal("mesh", c.exit)
    local all = must("net.render", { file = file, all = true })
    assert.same(c, all.n3)
    assert.matches("^graph", must("net.graph", { file = file }).dot)
    local v = must("net.validate", { file = file })
    assert.is_true(v.valid)
    assert.equal(2, v.public)
    local s = must("net.show", { file = file })
    assert.equal(3, #s.nodes)
    r = must("net.remove-node", { file = file, node = "n2" })
    assert.equal(2, #r.notes) -- the exit, and the device peering with it
    assert.is_nil(json.decode(read(file)).exit)
    assert.equal(json.null, must("net.set-exit", { file = file, node = json.null }).exit)
    assert.equal("facts.json\nnet.json\n", listing()) -- no temporary files left behind
  end)

  it("change nothing on error, naming the field", function()
    must("net.new", { file = file, name = "demo", ip_range = "10.1.0.0/16" })
    local before = read(file)
    local ok, err = call("net.add-node", { file = file, facts = { node_id = "Bad" } })
    assert.is_false(ok)
    assert.equal("facts.node_id: 'Bad' must match [a-z0-9][a-z0-9_-]* (at most 63 characters)", err)
    ok, err = call("net.set-exit", { file = file, node = "zz" })
    assert.equal("exit: 'zz' is not a node of network demo", err)
    assert.equal(before, read(file))
    assert.equal("net.json\n", listing())
  end)

  it("refuse unknown parameters, a missing file and an existing one on new", function()
    local ok, err = call("net.show", { file = file, colour = "red" })
    assert.is_false(ok)
    assert.equal("colour: 'red' is not a parameter of this entry point", err)
    ok, err = call("net.show", {})
    assert.equal("file: (missing) must be the path of a network file", err)
    ok, err = call("net.show", { file = dir .. "/none.json" })
    assert.matches("none%.json: No such file or directory", err)
    must("net.new", { file = file, name = "demo", ip_range = "10.1.0.0/16" })
    ok, err = call("net.new", { file = file, name = "demo", ip_range = "10.1.0.0/16" })
    assert.equal(string.format("file: '%s' already exists", file), err)
    ok, err = call("net.render", { file = file, node = "n1", all = true })
    assert.equal("node: 'n1' cannot go with all = true", err)
  end)

  it("use policies from policy_dir first", function()
    must("net.new", { file = file, name = "demo", ip_range = "10.1.0.0/16" })
    must("net.add-node", { file = file, facts = (build.facts("n1", "pub4", fake)) })
    local ok, err = call("net.render", { file = file, node = "n1", policy_dir = "tests/fixtures/net/policies/badrole" })
    assert.is_false(ok)
    assert.equal("tests/fixtures/net/policies/badrole/role.lua:4: policy role: hook role: node n1: returned maybe, "
      .. "expected \"public\" or \"hidden\"", err)
  end)
end)
