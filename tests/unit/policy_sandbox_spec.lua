-- The policy sandbox (DESIGN §9): a policy can neither hang the node (an
-- instruction budget per call, its top level included) nor reach host
-- tables (the string library through the string metatable, the context
-- it is given, the modules it requires). Each policy here tries one
-- escape; tests/fixtures/policies/<case>/.
local fake = require("fake_keys").install()
local net = require "zmesh.net"
local ip = require "zmesh.ip"
local firewall = require "zmesh.firewall"
local policy = require "zmesh.policy"
local build = dofile("tests/fixtures/net/build.lua")

local DIR = "tests/fixtures/policies/"

-- Line of FILE holding MARKER (the fixtures mark where they stop).
local function line_of(file, marker)
  local n = 0
  for line in io.lines(file) do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("no " .. marker .. " in " .. file)
end

-- "path:line" of the fixture line holding MARKER.
local function at(case, name, marker)
  local file = DIR .. case .. "/" .. name .. ".lua"
  return file .. ":" .. line_of(file, marker)
end

-- S as a Lua pattern that matches it literally.
local function lit(s) return (s:gsub("%p", "%%%0")) end

local function load_case(case, name, hooks)
  return assert(policy.load(name, { hooks = hooks }, { path = { DIR .. case } }))
end

-- Without a budget an endless policy would hang the suite: a watchdog
-- count hook, far above the budget, turns that into a failure. It is
-- also the hook the caller had, which every call must give back.
local WATCHDOG = 1000000000

local function watchdog()
  debug.sethook(watchdog, "", 1000)
  error("watchdog: no budget stopped the policy", 0)
end

local function guarded(fn, ...)
  debug.sethook(watchdog, "", WATCHDOG)
  local res = table.pack(pcall(fn, ...))
  local h = debug.gethook()
  debug.sethook()
  assert.equal(watchdog, h, "the caller's hook is back after the call")
  return table.unpack(res, 1, res.n)
end

local function facts(id, addresses)
  return { node_id = id, public_key = "k", addresses = addresses or { "192.168.1.5/24" },
    listen_ports = { min = 51820, max = 51829 } }
end

describe("policy sandbox budget", function()
  it("stops an endless hook within a second, naming the file and line", function()
    local p = load_case("loop_hook", "role", { "role", "endpoint" })
    local t0 = os.clock()
    local ok, err = guarded(policy.call, p, "role", facts("n1"))
    local took = os.clock() - t0
    assert.is_false(ok)
    assert.matches("^" .. lit(at("loop_hook", "role", "stops here")) .. ": policy took too long %(in policy role, hook role%)$", err)
    assert.is_true(took < 1, string.format("stopped after %.2f s", took))
    -- the budget is per call: the next calls start afresh
    local ok2, r = guarded(policy.call, p, "endpoint", facts("n1"), facts("n2"))
    assert.is_true(ok2)
    assert.is_nil(r)
    ok, err = guarded(policy.call, p, "role", facts("n1"))
    assert.is_false(ok)
    assert.matches("^" .. lit(at("loop_hook", "role", "stops here")) .. ": policy took too long", err)
  end)

end)

-- The same stops with a tenth of the budget, sooner.
describe("policy sandbox budget (a tenth of it)", function()
  local budget = policy.budget
  before_each(function() policy.budget = budget and budget // 10 end)
  after_each(function() policy.budget = budget end)

  it("stops an endless top level when loading", function()
    local ok, p, err = guarded(policy.load, "role", { hooks = { "role" } }, { path = { DIR .. "loop_top" } })
    assert.is_true(ok)
    assert.is_nil(p)
    assert.matches("^" .. lit(at("loop_top", "role", "stops here")) .. ": policy took too long$", err)
  end)

  it("stops a loop of long C calls by its CPU time, not only its instructions", function()
    local seconds = policy.seconds
    policy.seconds = 0.3
    local p = load_case("loop_concat", "role", { "role" })
    local t0 = os.clock()
    local ok, err = guarded(policy.call, p, "role", facts("n1"))
    local took = os.clock() - t0
    policy.seconds = seconds
    assert.is_false(ok)
    assert.matches("^" .. lit(at("loop_concat", "role", "stops here")) .. ": policy took too long", err)
    -- Not a speed target: without the clock this call would run for
    -- minutes (its instructions are few), so stopping at all is the point.
    assert.is_true(took < 5, "took " .. took .. " s")
  end)

  it("cannot be caught by the policy's own pcall or xpcall", function()
    local p = load_case("loop_catch", "role", { "role" })
    local ok, err = guarded(policy.call, p, "role", facts("n1"))
    assert.is_false(ok)
    assert.matches("loop_catch/role%.lua:%d+: policy took too long", err)
  end)

  it("renders nothing when the role policy loops", function()
    local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
    local ok, err = guarded(net.render, n, "n1", { policy_dir = DIR .. "loop_hook" })
    assert.is_false(ok)
    assert.matches("^" .. lit(at("loop_hook", "role", "stops here")) .. ": policy took too long", err)
  end)

  it("applies no firewall when the firewall policy loops", function()
    local ok, desc, err = guarded(firewall.from_policy, "nr",
      { uplink = "public", range = "10.1.0.0/16" }, { path = { DIR .. "loop_firewall" } })
    assert.is_true(ok)
    assert.is_nil(desc)
    assert.matches("^" .. lit(at("loop_firewall", "firewall", "stops here")) .. ": policy took too long", err)
  end)

  it("is shared by a nested call: the outer call still stops afterwards", function()
    local agg = load_case("nested", "aggregator", { "aggregators" })
    local role = assert(policy.load("role", { hooks = { "role" } }))
    local req = { hidden = { "h1", "h2" }, public = { "p1" },
      ask = function(h) return policy.call(role, "role", facts(h)) end }
    local ok, r = guarded(policy.call, agg, "aggregators", req)
    assert.is_true(ok)
    assert.same({ h1 = { "hidden" }, h2 = { "hidden" } }, r)
    req.spin = true
    local err
    ok, err = guarded(policy.call, agg, "aggregators", req)
    assert.is_false(ok)
    assert.matches("^" .. lit(at("nested", "aggregator", "stops here")) .. ": policy took too long", err)
  end)

  it("stops a nested endless call even when the outer policy catches it", function()
    local agg = load_case("nested", "aggregator", { "aggregators" })
    local looping = load_case("loop_hook", "role", { "role" })
    local req = { hidden = { "h1" }, public = { "p1" },
      ask = function(h) return policy.call(looping, "role", facts(h)) end }
    local ok, err = guarded(policy.call, agg, "aggregators", req)
    assert.is_false(ok)
    assert.matches("^" .. lit(at("loop_hook", "role", "stops here")) .. ": policy took too long", err)
  end)

  it("runs no policy code when the caller reads an answer", function()
    local agg = load_case("result_mt", "aggregator", { "aggregators" })
    local ok, r = guarded(function()
      local r = policy.call(agg, "aggregators", { hidden = { "h1" }, public = { "p1" } })
      -- what callers do with an answer: index, #, pairs, ipairs
      local n = 0
      for _ in pairs(r) do n = n + 1 end
      assert.equal(1, n)
      assert.equal(1, #r.h1)
      assert.equal("p1", r.h1[1])
      assert.is_nil(r.h2)
      return r
    end)
    assert.is_true(ok, r)
    assert.is_nil(getmetatable(r))
    assert.is_nil(getmetatable(r.h1))
  end)

  it("stops a policy called inside a coroutine (the hook is the coroutine's)", function()
    local p = load_case("loop_hook", "role", { "role" })
    local co = coroutine.create(function() return pcall(policy.call, p, "role", facts("n1")) end)
    debug.sethook(co, watchdog, "", WATCHDOG)
    local ok, resumed, called, err = guarded(coroutine.resume, co)
    assert.equal(watchdog, debug.gethook(co), "the coroutine's hook is back after the call")
    assert.is_true(ok and resumed)
    assert.is_false(called)
    assert.matches("^" .. lit(at("loop_hook", "role", "stops here")) .. ": policy took too long", err)
  end)

  it("gives a policy no coroutines, debug, io, os, loaders or other modules", function()
    -- not an escape today: this keeps it so (a count hook is per coroutine)
    local p = load_case("globals", "role", { "role" })
    assert.equal("", policy.call(p, "role", facts("n1")))
  end)

  it("refuses a finaliser, which would run outside any budget", function()
    local p = load_case("gc", "role", { "role" })
    local ok, err = guarded(policy.call, p, "role", facts("n1"))
    assert.is_false(ok)
    assert.matches("^" .. lit(at("gc", "role", "stops here")) .. ": policies may not set a __gc metamethod", err)
  end)
end)

describe("policy sandbox, string metatable", function()
  local string_format, string_rep, string_upper = string.format, string.rep, string.upper
  local string_mt_index = getmetatable("").__index
  -- On code without the sandbox the attacks succeed: put the library back.
  after_each(function()
    getmetatable("").__index = string_mt_index
    string.format, string.rep, string.upper = string_format, string_rep, string_upper
  end)

  for _, c in ipairs({
    { "index", 'getmetatable("").__index.format' },
    { "replace", 'getmetatable("").__index' },
    { "rawset", 'getmetatable("").__index.rep' },
  }) do
    it("is read-only to a policy (" .. c[1] .. ")", function()
      local p = load_case("string_mt", "role", { "role" })
      local ok, err = pcall(policy.call, p, "role", facts(c[1]))
      local untouched = getmetatable("").__index == string_mt_index and string.format == string_format
        and string.rep == string_rep
      assert.is_true(untouched, "the host's string library is unchanged")
      assert.is_false(ok)
      assert.equal(at("string_mt", "role", "stops " .. c[1])
        .. ": attempt to modify a read-only table (" .. c[2] .. ") (in policy role, hook role)", err)
    end)
  end
end)

describe("policy sandbox, read-only context", function()
  for _, c in ipairs({
    { "field", "node.force_role" },
    { "nested", "node.addresses[1]" },
    { "deep", "node.listen_ports.min" },
    { "rawset", "node.addresses[2]" },
    { "insert", "node.addresses[2]" },
    { "setmetatable", "node" },
  }) do
    it("refuses a write (" .. c[1] .. "), after reads, pairs, ipairs, # and next", function()
      local p = load_case("ctx_write", "role", { "role" })
      local f = facts(c[1])
      local ok, err = pcall(policy.call, p, "role", f)
      assert.same(facts(c[1]), f)
      assert.is_nil(getmetatable(f))
      assert.is_false(ok)
      assert.equal(at("ctx_write", "role", "stops " .. c[1])
        .. ": attempt to modify a read-only table (" .. c[2] .. ") (in policy role, hook role)", err)
    end)
  end
end)

describe("policy sandbox, required modules", function()
  local saved = {}
  for k, v in pairs(ip) do saved[k] = v end
  -- On code without the sandbox the attacks succeed: put the module back.
  after_each(function()
    for k in pairs(ip) do if saved[k] == nil then ip[k] = nil end end
    for k, v in pairs(saved) do ip[k] = v end
    ip.forget()
  end)

  local function unchanged()
    for k, v in pairs(saved) do if ip[k] ~= v then return false end end
    for k in pairs(ip) do if saved[k] == nil then return false end end
    return true
  end

  for _, c in ipairs({
    { "field", "zmesh.ip.parse_cidr" },
    { "new", "zmesh.ip.extra" },
    { "rawset", "zmesh.ip.classify" },
  }) do
    it("are read-only to a policy (" .. c[1] .. ")", function()
      local p = load_case("module_write", "role", { "role" })
      local ok, err = pcall(policy.call, p, "role", facts(c[1]))
      assert.is_true(unchanged(), "zmesh.ip is unchanged")
      assert.is_false(ok)
      assert.equal(at("module_write", "role", "stops " .. c[1])
        .. ": attempt to modify a read-only table (" .. c[2] .. ") (in policy role, hook role)", err)
    end)
  end

  it("give a policy its own copy of what their functions return (ip.parsed memoises)", function()
    local p = load_case("module_write", "role", { "role" })
    local f = facts("result", { "10.20.30.40/8" })
    assert.equal(8, ip.parsed("10.20.30.40/8").len)
    assert.equal("hidden", policy.call(p, "role", f))
    assert.equal(8, ip.parsed("10.20.30.40/8").len)
  end)
end)

describe("policy sandbox, the default policies", function()
  it("run with the budget on large inputs: 400 hidden NRs, 600 public, each check a nested call", function()
    local agg = assert(policy.load("aggregator", { hooks = { "aggregators" } }))
    local role = assert(policy.load("role", { hooks = { "role", "endpoint" } }))
    local public, hidden, by_id = {}, {}, {}
    for i = 1, 600 do
      public[i] = string.format("p%03d", i)
      by_id[public[i]] = facts(public[i], { string.format("198.51.100.%d/24", i % 250 + 1) })
    end
    for i = 1, 400 do
      hidden[i] = string.format("h%03d", i)
      by_id[hidden[i]] = facts(hidden[i], { string.format("192.168.%d.%d/16", i // 250, i % 250 + 1) })
    end
    local r = policy.call(agg, "aggregators", { net_id = "big", hidden = hidden, public = public, current = {},
      reachable = function(h, p) return policy.call(role, "endpoint", by_id[h], by_id[p]) ~= nil end })
    assert.equal(2, #r.h001)
    assert.same(r.h001, r.h400)
    assert.is_nil(debug.gethook())
  end)
end)

-- What a farmer reads when a policy fails: one line, the whole path and
-- the line, whatever the policy raised or answered.
describe("policy messages", function()
  local dir
  before_each(function()
    local p = io.popen("mktemp -d")
    dir = p:read("l") .. "/a-rather-long-directory-name-for-farmer-policies/v2"
    p:close()
    assert(os.execute("mkdir -p " .. dir))
  end)
  after_each(function() os.execute("rm -rf " .. dir:gsub("/a%-rather.*$", "")) end)

  local function role_policy(body)
    local f = assert(io.open(dir .. "/role.lua", "w"))
    f:write(body)
    f:close()
    return assert(policy.load("role", { hooks = { "role" } }, { path = { dir } }))
  end

  it("name the whole path and the line, also for an error raised without a position", function()
    for body, line in pairs({
      ['return { name = "role", version = 1,\n  role = function() error("x", 0) end }\n'] = 2,
      ['return { name = "role", version = 1,\n  role = function() error({}) end }\n'] = 2,
      ['return { name = "role", version = 1,\n\n  role = function() error("boom") end }\n'] = 3,
    }) do
      local ok, err = pcall(policy.call, role_policy(body), "role", {})
      assert.is_false(ok)
      local want = dir .. "/role.lua:" .. line .. ": "
      assert.equal(want, err:sub(1, #want))
    end
  end)

  it("are one line: control characters a policy raised or answered are escaped", function()
    local p = role_policy('return { name = "role", version = 1,\n  role = function() error("a\\nb\\27[2J") end }\n')
    local _, err = pcall(policy.call, p, "role", {})
    assert.not_matches("[%c]", err)
    assert.matches("a\\nb\\x1b[2J", err, 1, true)
    local ok
    ok, err = pcall(policy.breach, p, "role", "returned %s", "pub\r\nlic")
    assert.is_false(ok)
    assert.not_matches("[%c]", err)
  end)

  it("say a directory is no policy file", function()
    assert(os.execute("mkdir -p " .. dir .. "/exit.lua"))
    local p, err = policy.load("exit", { hooks = { "exit" } }, { path = { dir } })
    assert.is_nil(p)
    assert.equal(dir .. "/exit.lua: not a readable policy file (a directory?)", err)
  end)
end)

describe("policy sandbox, pairs", function()
  it("walks keys in one order every run (numbers, then strings), the policy's tables and the host's", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/role.lua", "w"))
    f:write([[
return { name = "role", version = 1, role = function(ctx)
  local t, out = {}, {}
  for i = 1, 40 do t["k" .. string.format("%02d", 41 - i)] = i end
  t[3], t[1] = true, true
  for k in pairs(t) do out[#out + 1] = tostring(k) end
  for k in pairs(ctx) do out[#out + 1] = k end
  return table.concat(out, ",")
end }
]])
    f:close()
    local p = assert(policy.load("role", { hooks = { "role" } }, { path = { dir } }))
    local got = policy.call(p, "role", { zeta = 1, alpha = 2, mid = 3 })
    os.execute("rm -rf " .. dir)
    local want = { "1", "3" }
    for i = 1, 40 do want[#want + 1] = string.format("k%02d", i) end
    for _, k in ipairs({ "alpha", "mid", "zeta" }) do want[#want + 1] = k end
    assert.equal(table.concat(want, ","), got)
  end)
end)
