-- The default aggregator policy: one ordered list per network by
-- rendezvous hashing, stable when unrelated nodes come and go.
local policy = require "zmesh.policy"

local agg = assert(policy.load("aggregator", { hooks = { "aggregators" } }))

local function all() return true end

local function public(n)
  local out = {}
  for i = 1, n do out[i] = string.format("p%02d", i) end
  return out
end

describe("policy aggregator", function()
  it("gives every hidden NR the same primary and one backup", function()
    local r = agg.aggregators({ net_id = "x1", hidden = { "h1", "h2", "h3" }, public = public(5), reachable = all })
    assert.equal(2, #r.h1)
    assert.not_equal(r.h1[1], r.h1[2])
    assert.same(r.h1, r.h2)
    assert.same(r.h1, r.h3)
  end)

  it("gives one aggregator when there is one public NR", function()
    assert.same({ h = { "p01" } }, agg.aggregators({ net_id = "x", hidden = { "h" }, public = public(1), reachable = all }))
  end)

  it("skips aggregators a hidden NR cannot reach", function()
    local r = agg.aggregators({ net_id = "x1", hidden = { "h1", "h2" }, public = public(5),
      reachable = function(h, p) return h == "h1" or p ~= "p03" end })
    for _, p in ipairs(r.h2) do assert.not_equal("p03", p) end
  end)

  it("is stable when unrelated nodes come and go, and moves only when an aggregator leaves", function()
    local base = agg.aggregators({ net_id = "n7", hidden = { "h1" }, public = public(20), reachable = all }).h1
    -- other hidden NRs, and public NRs that are not aggregators
    local more = public(20)
    local others = {}
    for _, p in ipairs(more) do
      if p ~= base[1] and p ~= base[2] then others[#others + 1] = p end
    end
    local fewer = { base[1], base[2] }
    for i = 1, 5 do fewer[#fewer + 1] = others[i] end
    table.sort(fewer)
    assert.same(base, agg.aggregators({ net_id = "n7", hidden = { "h0", "h1", "h9" }, public = fewer, reachable = all }).h1)
    -- the primary leaves: the backup takes over
    local without = {}
    for _, p in ipairs(more) do if p ~= base[1] then without[#without + 1] = p end end
    assert.equal(base[2], agg.aggregators({ net_id = "n7", hidden = { "h1" }, public = without, reachable = all }).h1[1])
  end)

  it("spreads networks over different aggregators", function()
    local primaries = {}
    for i = 1, 30 do
      primaries[agg.aggregators({ net_id = "net" .. i, hidden = { "h" }, public = public(10), reachable = all }).h[1]] = true
    end
    local n = 0
    for _ in pairs(primaries) do n = n + 1 end
    assert.is_true(n >= 4)
  end)
end)
