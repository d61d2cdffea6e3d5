-- The zmesh host and its commands, run as a user would (no root needed).
local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"

local function run(args, stdin)
  local tmp = os.tmpname()
  local cmd = BIN .. " " .. args .. " 2>" .. tmp
  local input
  if stdin then
    input = os.tmpname()
    local f = io.open(input, "w")
    f:write(stdin)
    f:close()
    cmd = cmd .. " <" .. input
  end
  local p = io.popen(cmd)
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(tmp)
  local err = f:read("a")
  f:close()
  os.remove(tmp)
  if input then os.remove(input) end
  return code, out, err
end

describe("zmesh", function()
  it("prints its version", function()
    local code, out = run("version")
    assert.equal(0, code)
    assert.matches("^zmesh %d+%.%d+%.%d+ %(Lua 5%.4%)\n$", out)
  end)

  it("lists commands on --help and explains each one", function()
    local code, out = run("--help")
    assert.equal(0, code)
    for _, cmd in ipairs({ "version", "call", "repl", "run", "node" }) do
      assert.matches("\n  " .. cmd .. " ", out, 1, true)
    end
    code, out = run("call --help")
    assert.equal(0, code)
    assert.matches("usage: zmesh call ENTRY", out, 1, true)
    assert.matches("Exit status", out, 1, true)
  end)

  it("prints a node subcommand's help and runs nothing (`node stop --help` must not stop)", function()
    -- A config that cannot be read: running the subcommand would fail.
    for _, sub in ipairs({ "stop", "start", "apply", "remove", "plan", "list" }) do
      local code, out, err = run("node " .. sub .. " --help --config /nonexistent/node.json --direct")
      assert.equal(0, code, err)
      assert.equal("", err)
      assert.matches("^usage: zmesh node " .. sub, out)
    end
    local code, out = run("node stop -h --dry-run")
    assert.equal(0, code)
    assert.matches("remove every NR and the ndmz", out, 1, true)
  end)

  it("refuses a node command line it cannot read with one line and status 2, running nothing", function()
    for args, want in pairs({
      ["node"] = "missing subcommand",
      ["node frob"] = "unknown subcommand 'frob'",
      ["node apply --bogus x.json"] = "unknown option --bogus",
      ["node list --config"] = "--config needs a value",
      ["node list extra more"] = "unexpected argument 'more'",
      ["node remove"] = "missing NET_ID",
    }) do
      local code, out, err = run(args .. " --direct")
      assert.equal(2, code, args)
      assert.equal("", out, args)
      assert.matches(want, err, 1, true)
      assert.equal(1, select(2, err:gsub("\n", "")), args)
    end
  end)

  it("never prints a key-shaped argument back, wherever it was given", function()
    local key = "AF4I22dAcPPsBmL3CG0OMJguEiZiVzWoJHM6u+TzV1U="
    for _, args in ipairs({ key, "node " .. key, "net show " .. key, "call " .. key, "run " .. key,
        "net graph examples/net-demo.json --status " .. key, "net render examples/net-demo.json " .. key }) do
      local code, _, err = run(args)
      assert.is_true(code ~= 0, args)
      assert.not_matches(key, err, 1, true)
      assert.matches("(a key, not shown)", err, 1, true)
    end
  end)

  it("refuses an unknown command with status 2", function()
    local code, out, err = run("frobnicate")
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("zmesh: unknown command 'frobnicate' (see zmesh --help)\n", err)
  end)

  describe("call", function()
    it("refuses an unknown entry point with one line and status 2", function()
      local code, out, err = run("call nope.nothing '{}'")
      assert.equal(2, code)
      assert.equal("", out)
      assert.equal("zmesh call: unknown entry point 'nope.nothing'\n", err)
      code, _, err = run("call nodot")
      assert.equal(2, code)
      assert.matches("expected area.verb", err, 1, true)
    end)

    it("refuses JSON that does not parse with one line and status 2", function()
      local code, out, err = run("call node.facts '{\"config\": '")
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("^zmesh call: invalid JSON: ", err)
      assert.equal(1, select(2, err:gsub("\n", "")))
      code, _, err = run("call node.facts -", "[1,2")
      assert.equal(2, code)
      assert.matches("invalid JSON", err, 1, true)
      code, _, err = run("call node.facts '42'")
      assert.equal(2, code)
      assert.matches("expected an object", err, 1, true)
      code, _, err = run("call node.facts '[]'")
      assert.equal(2, code)
      assert.matches("expected an object", err, 1, true)
      code, _, err = run("call node.facts - </dev/zero")
      assert.equal(2, code)
      assert.equal("zmesh call: standard input: larger than 16 MiB, the limit for JSON input\n", err)
    end)

    it("reports an entry point's own failure with status 1", function()
      local code, out, err = run("call node.facts '{\"config\": \"/nonexistent/node.json\"}'")
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^zmesh call: node.facts: node config: /nonexistent/node.json", err)
    end)

    it("lists the entry points", function()
      local code, out = run("call --list")
      assert.equal(0, code)
      for _, name in ipairs({ "node.start", "node.facts", "nr.apply", "nr.plan", "nr.remove",
          "container.attach", "container.detach" }) do
        assert.matches(name, out, 1, true)
      end
    end)
  end)

  describe("node", function()
    it("refuses a directory, endless input and an oversized stdin with one line and status 1 (the input at fault)", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      local code, out, err = run("node apply " .. dir)
      os.execute("rmdir " .. dir)
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal("zmesh node apply: " .. dir .. ": is a directory, not a file\n", err)
      code, out, err = run("node diff /dev/zero")
      assert.equal(1, code)
      assert.equal("zmesh node diff: /dev/zero: larger than 16 MiB, the limit for JSON input\n", err)
      code, out, err = run("node diff - </dev/zero")
      assert.equal(1, code)
      assert.equal("zmesh node diff: standard input: larger than 16 MiB, the limit for JSON input\n", err)
      code, out, err = run("node diff -", "[1,")
      assert.equal(1, code)
      assert.matches("^zmesh node diff: standard input: invalid JSON: ", err)
    end)
  end)

  describe("run", function()
    it("runs a file with arguments and returns its status", function()
      local f = os.tmpname()
      local h = io.open(f, "w")
      h:write('local core = require "zmesh.core"\nprint(core.version, ...)\nreturn 3\n')
      h:close()
      local code, out = run("run " .. f .. " a b")
      os.remove(f)
      assert.equal(3, code)
      assert.matches("a\tb\n$", out)
    end)
  end)

  describe("repl", function()
    it("evaluates expressions and statements, with the library at hand", function()
      local code, out = run("repl", "1+2\nt = {}\nfor i = 1, 2 do\nt[i] = i\nend\n#t\ncore.version ~= nil\n")
      assert.equal(0, code)
      assert.matches("> 3\n", out, 1, true)
      assert.matches(">> ", out, 1, true)
      assert.matches("> 2\n", out, 1, true)
      assert.matches("> true\n", out, 1, true)
    end)
  end)
end)

describe("zmesh.entry", function()
  local entry = require "zmesh.entry"
  it("resolves area.verb and refuses the rest", function()
    assert.is_function(entry.resolve("nr.apply"))
    assert.is_nil(entry.resolve("nr.nothing"))
    assert.is_nil(entry.resolve("../etc.passwd"))
    local fn, err = entry.resolve(42)
    assert.is_nil(fn)
    assert.matches("unknown entry point", err)
  end)

  it("returns an entry's error as a message", function()
    local ok, err = entry.call("nr.remove", { net_id = "BAD!" })
    assert.is_false(ok)
    assert.matches("net_id 'BAD!'", err, 1, true)
  end)
end)
