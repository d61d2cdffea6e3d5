-- `make install` into a staging directory: the host runs from there with
-- its Lua tree and policies, and the systemd unit starts the daemon from
-- the installed path, stopping only the daemon (never the data plane).
local testns = require "testns"

local ROOT = os.getenv("ZMESH_ROOT") or "."
local BIN = os.getenv("ZMESH_BIN") or (ROOT .. "/build/zmesh")

describe("make install", function()
  it("installs a working zmesh, its Lua tree, policies and the systemd unit", function()
    local dest = testns.must("mktemp -d")
    finally(function() testns.sh("rm -rf " .. dest) end)
    local build = BIN:match("^(.*)/zmesh$")
    -- -o all: install what this run built, as it is (a sanitizer build
    -- must not be relinked without its flags).
    testns.must(string.format("make -s -C %s install -o all BUILD=%s DESTDIR=%s PREFIX=/opt/zm", ROOT, build,
      dest))
    local out = testns.must(dest .. "/opt/zm/bin/zmesh version")
    assert.matches("^zmesh %d", out)
    -- The installed tree answers without the source tree (policies included).
    out = testns.must(string.format("cd / && %s/opt/zm/bin/zmesh call --list --direct", dest))
    assert.matches("nr.apply", out, 1, true)
    assert.truthy(io.open(dest .. "/opt/zm/share/zmesh/policies/firewall.lua"))
    local unit = assert(io.open(dest .. "/opt/zm/lib/systemd/system/zmesh.service")):read("a")
    assert.matches("ExecStart=/opt/zm/bin/zmesh daemon --config /etc/zmesh/node.json", unit, 1, true)
    assert.matches("KillMode=process", unit, 1, true)
    assert.matches("ExecReload=/bin/kill -HUP $MAINPID", unit, 1, true)
    assert.not_matches("@", unit, 1, true)
  end)
end)
