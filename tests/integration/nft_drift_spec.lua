-- Drift: the NR firewall applied through the node's own desired-state path
-- (a reconcile with an nft resource), then changed behind Zero-Mesh's back
-- with the real nft, one rule property at a time: a verdict, a match, the
-- order, a rule added, a rule removed. Each change must show in the plan,
-- named (which rule, what), and the next apply must put back exactly the
-- table there was. A change that keeps the rule's comment is the case
-- that matters: `accept` in place of the diode's `drop`, comment kept.
local core = require "zmesh.core"
local firewall = require "zmesh.firewall"
local reconcile = require "zmesh.reconcile"
local testns = require "testns"
local h = dofile((os.getenv("ZMESH_ROOT") or ".") .. "/tests/fixtures/nft/helpers.lua")

local NR_CTX = { uplink = "public", range = "192.0.2.0/24", range6 = "2001:db8:1::/48",
  wg = "w-test", bridge = "b-test" }

local describe_root = h.is_root() and describe or pending

describe_root("firewall drift, changed with nft behind Zero-Mesh's back", function()
  local ns, record, desired

  setup(function()
    ns = testns.name("fw-drift")
    record = os.tmpname()
    os.remove(record)
    -- The default NR ruleset, as node applies give it. (record: where the
    -- reconciler of before kept the last ruleset applied; ignored now.)
    desired = function()
      return {
        { kind = "netns", name = ns },
        { kind = "nft", ns = ns, ruleset = assert(firewall.from_policy("nr", NR_CTX)),
          record = record },
      }
    end
  end)

  teardown(function()
    os.remove(record)
    local ok, err = testns.cleanup()
    assert(ok, err)
  end)

  local function plan() return reconcile.plan(core, desired()) end

  -- The table as nft lists it, handles and counter values left out.
  local function table_text()
    local out = assert(h.nft(ns, "list table inet zmesh"))
    return (out:gsub("counter packets %d+ bytes %d+", "counter"))
  end

  -- The handle of the rule in CHAIN whose listing contains TEXT.
  local function handle(chain, text)
    local out = assert(h.nft(ns, "-a list chain inet zmesh " .. chain))
    for line in out:gmatch("[^\n]+") do
      if line:find(text, 1, true) then return assert(line:match("# handle (%d+)$")) end
    end
    error("no rule '" .. text .. "' in chain " .. chain .. ":\n" .. out)
  end

  -- An nft command, through a file: no shell quoting to get wrong.
  local function tamper(cmd)
    local out, ok = h.nft_file(ns, cmd .. "\n")
    assert(ok, cmd .. ": " .. out)
  end

  local original

  before_each(function()
    -- Converged from scratch, whatever an earlier case left: the table
    -- is Zero-Mesh's and the plan is empty.
    if core.netns.exists(ns) then h.nft(ns, "flush ruleset") end
    os.remove(record)
    local report = reconcile.apply(core, desired())
    assert(report.ok, report.error)
    assert.same({}, plan())
    original = original or table_text()
    assert.equals(original, table_text())
  end)

  -- The plan has exactly one line, for the table, naming WHAT; an apply
  -- puts the table back as it was and leaves nothing to do.
  local function repaired(what)
    local lines = plan()
    assert.equals(1, #lines, table.concat(lines, "\n"))
    assert.matches("^firewall table inet zmesh in " .. ns:gsub("%-", "%%-") .. ": ", lines[1])
    assert.matches(what, lines[1], 1, true)
    local report = reconcile.apply(core, desired())
    assert(report.ok, report.error)
    assert.same({ lines[1] }, report.done)
    assert.equals(original, table_text())
    assert.same({}, plan())
  end

  it("a verdict turned, comment kept: the diode's drop made accept", function()
    tamper("replace rule inet zmesh input handle " .. handle("input", 'comment "input diode"')
      .. ' iifname "public" counter accept comment "input diode"')
    repaired("chains[1].rules[4] verdict: kernel accept, want drop")
  end)

  it("the README's example: the diode's drop made accept, counter dropped too", function()
    tamper("replace rule inet zmesh input handle " .. handle("input", 'comment "input diode"')
      .. ' iifname "public" accept comment "input diode"')
    repaired("chains[1].rules[4] verdict: kernel accept, want drop (also differs: counter)")
  end)

  it("two chains changed: both named, in one line", function()
    tamper("replace rule inet zmesh input handle " .. handle("input", 'comment "input diode"')
      .. ' iifname "public" counter accept comment "input diode"')
    tamper("replace rule inet zmesh forward handle " .. handle("forward", 'comment "forward diode"')
      .. ' iifname "eth9" counter drop comment "forward diode"')
    repaired("chains[1].rules[4] verdict: kernel accept, want drop; "
      .. "chains[2].rules[5] match.iifname: kernel eth9, want public")
  end)

  it("a match changed, comment kept", function()
    tamper("replace rule inet zmesh forward handle " .. handle("forward", 'comment "forward diode"')
      .. ' iifname "eth9" counter drop comment "forward diode"')
    repaired("chains[2].rules[5] match.iifname: kernel eth9, want public")
  end)

  it("two rules swapped", function()
    -- The invalid-state drop goes after the neighbour discovery accept.
    local invalid = handle("input", 'comment "input invalid"')
    tamper("delete rule inet zmesh input handle " .. invalid)
    tamper("add rule inet zmesh input position " .. handle("input", 'comment "neighbour discovery"')
      .. ' iifname "public" ct state invalid counter drop comment "input invalid"')
    repaired("chains[1].rules[2]: out of order, kernel has rules[3]")
  end)

  it("a rule added in front of the diode", function()
    tamper("insert rule inet zmesh input tcp dport 22 accept")
    repaired("chains[1].rules[1]: not wanted, kernel has tcp dport 22 accept")
  end)

  it("a rule removed", function()
    tamper("delete rule inet zmesh forward handle " .. handle("forward", 'comment "forward diode"'))
    repaired('chains[2].rules[5]: missing, want iifname "public" counter drop comment "forward diode"')
  end)

  it("a rule Zero-Mesh would never write (a log expression)", function()
    tamper("replace rule inet zmesh input handle " .. handle("input", 'comment "input diode"')
      .. ' iifname "public" counter log drop comment "input diode"')
    repaired("chains[1].rules[4]: kernel has a rule Zero-Mesh never writes [meta load iifname")
  end)

  it("the table switched off (dormant)", function()
    tamper("add table inet zmesh { flags dormant; }")
    repaired("table: kernel has what Zero-Mesh never writes (table flags 1 (dormant))")
  end)

  it("the policy of a chain", function()
    tamper("add chain inet zmesh postrouting { policy drop; }")
    repaired("chains[3] policy: kernel drop, want accept")
  end)
end)
