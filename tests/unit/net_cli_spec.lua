-- `zmesh net` on the command line: the real host binary with the real key
-- module (no root needed), on the example node facts in examples/.
local json = require "zmesh.json"
local build = dofile("tests/fixtures/net/build.lua")

local bin = os.getenv("ZMESH_BIN") or "build/zmesh"
local dir

-- Run zmesh with ARGS (a shell string); returns stdout, stderr, status.
local function zmesh(args, input)
  local out, err = dir .. "/out", dir .. "/err"
  local cmd = string.format("%s %s >%s 2>%s", bin, args, out, err)
  if input then cmd = string.format("printf '%%s' '%s' | %s", input, cmd) end
  local _, _, status = os.execute(cmd)
  return build.read(out), build.read(err), status
end

describe("zmesh net (CLI)", function()
  local file
  before_each(function()
    dir = build.tmpdir()
    file = dir .. "/net.json"
  end)
  after_each(function() build.rmdir(dir) end)

  it("explains itself and every subcommand", function()
    local out, _, status = zmesh("net --help")
    assert.equal(0, status)
    for _, sub in ipairs({ "new", "add-node", "remove-node", "set-exit", "add-access", "remove-access",
        "show", "validate", "render", "graph" }) do
      assert.matches("\n  " .. sub:gsub("%-", "%%-") .. " +%S", out)
      local help, _, st = zmesh("net " .. sub .. " --help")
      assert.equal(0, st)
      assert.matches("^usage: zmesh net " .. sub:gsub("%-", "%%-") .. " FILE", help)
      assert.is_true(#help > 120)
    end
    assert.matches("net +define a user network", (zmesh("--help")))
  end)

  it("gives a network a routed IPv6 prefix and exposes a port of one container", function()
    local _, err, status = zmesh("net new " .. file .. " r 10.1.0.0/16 --routed-ipv6 2001:db8:100::/48 --id r1")
    assert.equal(0, status, err)
    for i = 1, 2 do
      local out
      out, err, status = zmesh(string.format("net add-node %s examples/facts-n%d.json", file, i))
      assert.equal(0, status, err)
      assert.matches("2001:db8:100:" .. i .. "::/64", out, 1, true)
    end
    local out
    out, err, status = zmesh("net expose " .. file .. " n2 2001:db8:100:2::10 8080/tcp")
    assert.equal(0, status, err)
    assert.equal("exposed 2001:db8:100:2::10 8080/tcp on n2\n", out)
    _, err, status = zmesh("net expose " .. file .. " n2 2001:db8:100:2::10 8080")
    assert.equal(1, status)
    assert.matches("port: '8080' must be PORT/PROTO", err, 1, true)
    _, err, status = zmesh("net render " .. file .. " n1")
    assert.equal(1, status)
    assert.matches("has no entry point", err, 1, true)
    out = zmesh("net show " .. file)
    assert.matches("routed IPv6: 2001:db8:100::/48", out, 1, true)
    assert.matches("expose n2        2001:db8:100:2::10 8080/tcp", out, 1, true)
    out, _, status = zmesh("net set-routed-ipv6 " .. file .. " none")
    assert.equal(0, status)
    assert.matches("note: 1 exposure(s) of 2001:db8:100::/48 closed", out, 1, true)
    out, _, status = zmesh("net unexpose " .. file .. " n2 2001:db8:100:2::10 8080/tcp")
    assert.equal(1, status)
  end)

  it("builds, renders and graphs the example network", function()
    local _, err, status = zmesh("net new " .. file .. " demo 10.1.0.0/16 --ipv6 fd00:1::/48 --id demo1")
    assert.equal(0, status, err)
    for i = 1, 5 do
      local out
      out, err, status = zmesh(string.format("net add-node %s examples/facts-n%d.json", file, i))
      assert.equal(0, status, err)
      assert.matches("^added n" .. i .. ": subnet 10%.1%." .. i .. "%.0/24 fd00:1:0:" .. i .. "::/64, port %d+\n$", out)
    end
    local out = zmesh("net set-exit " .. file .. " n2")
    -- n1 has the IPv6 Internet on its own; through n2 (IPv4 only) none has.
    assert.equal("sole exit: n2\nnote: n2 has no global IPv6 address: while it is the exit, no container "
      .. "reaches the IPv6 Internet\n", out)
    out, err, status = zmesh("net add-access " .. file .. " laptop --via n1")
    assert.equal(0, status, err)
    assert.matches("\nPrivateKey = [A-Za-z0-9+/]+=\n", out)
    out = zmesh("net show " .. file)
    assert.matches("n3 +hidden +10%.1%.3%.0/24", out)
    assert.matches("exit: n2 %(sole exit%)", out)
    assert.matches("device laptop", out)
    out, err, status = zmesh("net validate " .. file)
    assert.equal(0, status, err)
    assert.equal("network demo is valid: 5 NRs (3 public, 2 hidden), 1 device(s)\n", out)
    out = zmesh("net render " .. file .. " n4")
    local cfg = assert(json.decode(out))
    assert.equal("n4", cfg.node_id)
    assert.equal("mesh", cfg.exit)
    assert.equal(25, cfg.peers[1].persistent_keepalive)
    local all = assert(json.decode((zmesh("net render " .. file .. " --all"))))
    assert.same(cfg, all.n4)
    out = zmesh("net graph " .. file)
    assert.matches("^graph \"zmesh%-demo\" {\n", out)
    out = zmesh("net show " .. file .. " --json")
    assert.equal("demo1", json.decode(out).net_id)
    out = zmesh("net remove-node " .. file .. " n2")
    assert.equal("removed n2\nnote: n2 was the sole exit: every NR now breaks out locally\n", out)
  end)

  it("reads facts from standard input", function()
    zmesh("net new " .. file .. " demo 10.1.0.0/16")
    local f = io.open("examples/facts-n1.json") local facts = f:read("a") f:close()
    local out, err, status = zmesh("net add-node " .. file .. " -", facts:gsub("\n", ""))
    assert.equal(0, status, err)
    assert.matches("^added n1", out)
  end)

  it("exits 1 with one message naming the field and value, 2 on usage errors", function()
    local _, err, status = zmesh("net new " .. file .. " demo 100.64.0.0/16")
    assert.equal(1, status)
    assert.equal("zmesh net new: ip_range: '100.64.0.0/16' overlaps 100.64.0.0/10, which Zero-Mesh reserves for its own addresses\n", err)
    zmesh("net new " .. file .. " demo 10.1.0.0/16")
    _, err, status = zmesh("net add-node " .. file .. " examples/facts-n1.json --subnet 10.2.0.0/24")
    assert.equal(1, status)
    assert.equal("zmesh net add-node: subnet: '10.2.0.0/24' is outside ip_range 10.1.0.0/16\n", err)
    _, err, status = zmesh("net render " .. file)
    assert.equal(2, status)
    assert.matches("render takes FILE NODE", err)
    _, err, status = zmesh("net frobnicate")
    assert.equal(2, status)
    _, err, status = zmesh("net show " .. file .. " --colour")
    assert.equal(2, status)
    assert.equal("zmesh net: unknown option --colour for show\n", err)
    _, err, status = zmesh("net add-node " .. file .. " examples/facts-n1.json --port x")
    assert.equal(2, status)
    _, err, status = zmesh("net render " .. file .. " n1 --policy-dir tests/fixtures/net/policies/syntax")
    assert.equal(1, status)
    assert.matches("^zmesh net render: tests/fixtures/net/policies/syntax/role%.lua:3: ", err)
  end)

  it("exits 1 with the policy's file and line whenever a policy is at fault, in every subcommand", function()
    zmesh("net new " .. file .. " demo 10.1.0.0/16 --id demo1")
    for i = 1, 5 do zmesh(string.format("net add-node %s examples/facts-n%d.json", file, i)) end
    zmesh("net add-access " .. file .. " laptop --via n1")
    local keys = io.popen(bin .. " genkey | " .. bin .. " pubkey")
    local facts = dir .. "/facts-n6.json"
    local f = io.open(facts, "w")
    f:write(json.encode({ node_id = "n6", public_key = keys:read("l"), addresses = { "203.0.113.16/24" },
      listen_ports = { min = 51820, max = 52819 } }))
    f:close()
    keys:close()
    local before = build.read(file)
    local dirs = "tests/fixtures/net/policies/"
    local faults = {
      syntax = "role.lua:3: '}' expected",
      badrole = "role.lua:4: policy role: hook role: node n1: returned maybe",
      wrongtype = "aggregator.lua:4: policy aggregator: hook aggregators: returned string, expected a table",
      badexit = "exit.lua:4: policy exit: hook exit: returned elsewhere",
    }
    local commands = {
      "show FILE", "show FILE --json", "validate FILE", "render FILE n3", "render FILE --all", "graph FILE",
      "add-node FILE " .. facts, "add-node FILE examples/facts-n3.json --update", "remove-node FILE n4",
      "set-exit FILE n2", "set-exit FILE none", "add-access FILE phone", "remove-access FILE laptop",
    }
    local function plain(text) return (text:gsub("%p", "%%%0")) end
    for sub, where in pairs(faults) do
      for _, cmd in ipairs(commands) do
        local args = cmd:gsub("FILE", file) .. " --policy-dir " .. dirs .. sub
        local out, err, status = zmesh("net " .. args)
        assert.equal(1, status, args .. ": " .. err)
        assert.equal("", out)
        assert.matches("^zmesh net " .. plain(cmd:match("^%S+")) .. ": " .. plain(dirs .. sub .. "/" .. where), err)
        assert.equal(before, build.read(file)) -- a refused change leaves the file as it was
      end
    end
    -- new loads the policies before it writes: a broken one leaves no file
    local other = dir .. "/other.json"
    local _, err, status = zmesh("net new " .. other .. " x 10.2.0.0/16 --policy-dir " .. dirs .. "syntax")
    assert.equal(1, status)
    assert.matches("^zmesh net new: " .. plain(dirs .. "syntax/role.lua:3: "), err)
    assert.is_nil(io.open(other))
  end)

  it("shows a network that cannot be served yet with its problem, exit status 0", function()
    zmesh("net new " .. file .. " demo 10.1.0.0/16 --id demo1")
    zmesh("net add-node " .. file .. " examples/facts-n3.json")
    zmesh("net add-node " .. file .. " examples/facts-n4.json")
    local out, err, status = zmesh("net show " .. file)
    assert.equal(0, status, err)
    assert.matches("\nproblem: network demo has hidden nodes %(n3, n4%) but no public node", out)
    assert.matches("\nn3 +hidden +10%.1%.1%.0/24", out)
    _, err, status = zmesh("net validate " .. file)
    assert.equal(1, status)
    assert.matches("^zmesh net validate: network demo has hidden nodes", err)
    _, err, status = zmesh("net show " .. file .. " --policy-dir tests/fixtures/net/policies/badrole")
    assert.equal(1, status)
    assert.matches("^zmesh net show: tests/fixtures/net/policies/badrole/role%.lua:4: ", err)
    -- a public node makes it whole; the hidden nodes' aggregators are recorded
    zmesh("net add-node " .. file .. " examples/facts-n1.json")
    local n = json.decode(build.read(file))
    assert.same({ "n1" }, n.nodes[2].aggregators)
    out = zmesh("net show " .. file)
    assert.matches("\nn3 +hidden +10%.1%.1%.0/24 +%d+ +n1\n", out)
  end)
end)
