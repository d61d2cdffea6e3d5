-- The default aggregator policy: one ordered list per network, the
-- choice in force (req.current) first, then rendezvous hashing; stable
-- when unrelated nodes come and go.
local policy = require "zmesh.policy"

local agg = assert(policy.load("aggregator", { hooks = { "aggregators" } }))
-- Version 1, before req.current: what a file without the record renders to.
local v1 = assert(policy.load("aggregator", { hooks = { "aggregators" } },
  { path = { "tests/fixtures/net/policies/rendezvous" } }))

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

  it("without a choice in force, answers as version 1 did (rendezvous hashing)", function()
    for i = 1, 40 do
      local req = { net_id = "v" .. i, hidden = { "h1", "h2" }, public = public(i % 7 + 1),
        reachable = function(h, p) return h == "h1" or p ~= "p02" end }
      assert.same(v1.aggregators(req), agg.aggregators(req))
      req.current = {}
      assert.same(v1.aggregators(req), agg.aggregators(req))
    end
  end)

  it("keeps the choice in force when a new public NR outscores its primary", function()
    -- Find a public NR that rendezvous hashing would make primary.
    local base = agg.aggregators({ net_id = "k1", hidden = { "h1" }, public = public(3), reachable = all }).h1
    local more, winner = public(3), nil
    for i = 4, 60 do
      local id = string.format("p%02d", i)
      local with = public(3)
      with[#with + 1] = id
      if agg.aggregators({ net_id = "k1", hidden = { "h1" }, public = with, reachable = all }).h1[1] == id then
        winner = id
        more[#more + 1] = id
        break
      end
    end
    assert.truthy(winner, "some id outscores the primary")
    local r = agg.aggregators({ net_id = "k1", hidden = { "h1", "h2" }, public = more, reachable = all,
      current = { h1 = base, h2 = base } })
    assert.same(base, r.h1)
    assert.same(base, r.h2)
    -- a new hidden NR joins the primary in force, not the high scorer
    r = agg.aggregators({ net_id = "k1", hidden = { "h3" }, public = more, reachable = all,
      current = { h1 = base, h2 = base } })
    assert.same(base, r.h3)
  end)

  it("moves the next one up when an aggregator leaves, and fills the list up again", function()
    -- p04, primary of h1 and h2, left: the network gives only live candidates
    local r = agg.aggregators({ net_id = "m1", hidden = { "h1", "h2", "h3" }, public = { "p01", "p02", "p03" },
      reachable = all, current = { h1 = { "p02" }, h2 = { "p02" }, h3 = { "p02" } } })
    assert.equal("p02", r.h1[1])
    assert.equal(2, #r.h1)
    assert.same(r.h1, r.h2)
    assert.same(r.h1, r.h3) -- the same backup for all
    -- a list shorter than wanted (one public NR then) is filled up
    r = agg.aggregators({ net_id = "m1", hidden = { "h1" }, public = { "p02", "p04", "p09" },
      reachable = all, current = { h1 = { "p04" } } })
    assert.equal("p04", r.h1[1])
    assert.equal(2, #r.h1)
    -- a list longer than wanted is cut, in its order; the request is only read
    local current = { h1 = { "p05", "p03", "p01" } }
    r = agg.aggregators({ net_id = "m1", hidden = { "h1" }, public = public(5), reachable = all, current = current })
    assert.same({ "p05", "p03" }, r.h1)
    assert.same({ h1 = { "p05", "p03", "p01" } }, current)
  end)

  it("orders the rest by the choice in force: primaries, then backups, then hashing", function()
    local r = agg.aggregators({ net_id = "o1", hidden = { "h1", "h2", "h3", "h9" }, public = public(6),
      reachable = function(h, p) return h ~= "h9" or p ~= "p06" end,
      current = { h1 = { "p06", "p03" }, h2 = { "p06", "p03" }, h3 = { "p05", "p03" } } })
    assert.same({ "p06", "p03" }, r.h1)
    assert.same({ "p05", "p03" }, r.h3)
    -- h9 cannot reach p06, the primary of most: the next, p05, then p03
    assert.same({ "p05", "p03" }, r.h9)
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
