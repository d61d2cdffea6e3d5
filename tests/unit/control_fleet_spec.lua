-- fleet.matrix: the report of `zmesh net check` from the statuses read.
local fleet = require "zmesh.control.fleet"

describe("net check's matrix", function()
  local NOW = 1000000
  local n = { name = "t", net_id = "abc", nodes = { { node_id = "n1" }, { node_id = "n2" } } }

  local function status(id, other, age, extra)
    local st = {
      node_id = id, net_id = "abc", generation = 3, result = "ok", updated_at = NOW - age, status_interval = 10,
      reach = { [other] = { reachable = true, rtt_ms = 0.5, path = "direct", at = NOW - age } },
    }
    for k, v in pairs(extra or {}) do st[k] = v end
    return st
  end

  it("counts fresh statuses: every pair reachable, no problem", function()
    local r = fleet.matrix(n, { generation = 3 }, { n1 = status("n1", "n2", 5), n2 = status("n2", "n1", 8) }, NOW)
    assert.same({}, r.problems)
    assert.equal(2, r.reachable)
    assert.is_true(r.ok)
  end)

  it("marks a node that stopped publishing stale and does not count what it last measured", function()
    local r = fleet.matrix(n, { generation = 3 }, { n1 = status("n1", "n2", 5), n2 = status("n2", "n1", 31) }, NOW)
    assert.is_true(r.nodes[2].stale)
    assert.is_nil(r.nodes[1].stale)
    assert.equal(1, r.reachable)
    assert.matches("^n2: status 31 s old, not refreshed for 3 status intervals", r.problems[1])
    assert.is_false(r.ok)
    for _, c in ipairs(r.pairs) do
      if c.from == "n2" then assert.not_equal(true, c.reachable) end
    end
  end)

  it("judges staleness by the node's own status interval", function()
    local slow = status("n2", "n1", 50, { status_interval = 30 })
    local r = fleet.matrix(n, { generation = 3 }, { n1 = status("n1", "n2", 5), n2 = slow }, NOW)
    assert.is_nil(r.nodes[2].stale)
    assert.equal(2, r.reachable)
  end)
end)
