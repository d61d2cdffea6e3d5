-- One validator: firewall.validate (Lua) and core.nft.apply (conversion in
-- C, the rest the kernel's) accept and refuse the same descriptions, case
-- by case (tests/fixtures/nft/cases.lua), in a namespace of this run.
-- Refused means: firewall.validate returns nil; core.nft.apply raises
-- (conversion) or returns the kernel's error. Accepted means: validate
-- returns a description, the kernel took the raw case, `nft list` shows
-- the table, and core.nft.dump reads back exactly what validate returned.
local core = require "zmesh.core"
local firewall = require "zmesh.firewall"
local testns = require "testns"
local root = os.getenv("ZMESH_ROOT") or "."
local h = dofile(root .. "/tests/fixtures/nft/helpers.lua")
local cases = dofile(root .. "/tests/fixtures/nft/cases.lua")

local describe_root = h.is_root() and describe or pending

describe_root("firewall.validate and core.nft.apply agree", function()
  local ns

  setup(function()
    ns = testns.name("fw-cases")
    assert(core.netns.create(ns))
  end)

  teardown(function()
    local ok, err = testns.cleanup()
    assert(ok, err)
  end)

  before_each(function() h.nft(ns, "flush ruleset") end)

  for _, case in ipairs(cases) do
    local what, desc, want = case[1], case[2], case.ok
    it((want and "accepts " or "refuses ") .. what, function()
      local norm, why = firewall.validate(desc)
      local raised, ok, err = pcall(core.nft.apply, ns, desc)
      local c_ok = raised and ok == true
      local c_why = not raised and ok or err
      assert(want == (norm ~= nil), string.format("firewall.validate %s it%s", norm and
        "accepts" or "refuses", why and (": " .. why) or ""))
      assert(want == c_ok, string.format("core.nft.apply %s it%s", c_ok and "accepts" or
        "refuses", c_why and (": " .. tostring(c_why)) or ""))
      if not want then return end
      local family, tbl = norm.family, norm.table
      assert.matches("table " .. family .. " " .. tbl, (h.nft(ns, "list ruleset")), 1, true)
      local dump = assert(core.nft.dump(ns, { family = family, table = tbl }))
      assert.is_nil(firewall.difference(dump, norm))
      dump.live = nil
      assert.same(norm, dump)
    end)
  end

  it("covers every word of the vocabulary and both outcomes", function()
    local accepted, refused = 0, 0
    for _, case in ipairs(cases) do
      if case.ok then accepted = accepted + 1 else refused = refused + 1 end
    end
    assert.is_true(accepted >= 50 and refused >= 100, accepted .. " accepted, " .. refused .. " refused")
  end)
end)
