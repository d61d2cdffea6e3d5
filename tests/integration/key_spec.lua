-- Keys agree byte for byte with wireguard-tools; sealed keys open only
-- with the right node key; key files are written 0600.
local core = require "zmesh.core"
local testns = require "testns"

local BIN = os.getenv("ZMESH_BIN") or "build/zmesh"

describe("keys", function()
  it("zmesh and wg agree on public keys, both directions", function()
    for _ = 1, 5 do
      local wgkey = testns.sh("wg genkey")
      local wgpub = testns.sh("printf '%s\\n' '" .. wgkey .. "' | wg pubkey")
      local zpub = testns.sh("printf '%s\\n' '" .. wgkey .. "' | " .. BIN .. " pubkey")
      assert.equal(wgpub, zpub)
      local zkey = testns.sh(BIN .. " genkey")
      assert.equal(44, #zkey)
      assert.equal(testns.sh("printf '%s\\n' '" .. zkey .. "' | wg pubkey"),
        testns.sh("printf '%s\\n' '" .. zkey .. "' | " .. BIN .. " pubkey"))
      assert.equal(core.key.private(zkey):public(), testns.sh("printf '%s\\n' '" .. zkey .. "' | wg pubkey"))
    end
  end)

  it("generates clamped keys, as wg does", function()
    local raw = testns.sh(BIN .. " genkey | base64 -d | od -An -tu1 -v")
    local bytes = {}
    for b in raw:gmatch("%d+") do bytes[#bytes + 1] = tonumber(b) end
    assert.equal(32, #bytes)
    assert.equal(0, bytes[1] & 7)
    assert.equal(64, bytes[32] & 0xc0)
  end)

  it("pubkey refuses garbage without echoing it", function()
    local out, ok = testns.sh("echo 'c2VjcmV0LWJ1dC1icm9rZW4=' | " .. BIN .. " pubkey")
    assert.is_false(ok)
    assert.equal("zmesh pubkey: standard input is not a private key", out)
  end)

  it("seals a private key to a node, opened only with that node's key", function()
    local node, other = core.key.generate(), core.key.generate()
    local nr = core.key.generate()
    local sealed = nr:seal(node:public())
    assert.not_equal(sealed, nr:seal(node:public()), "fresh nonce each time")
    local opened = assert(core.key.open_sealed(sealed, node))
    assert.is_true(opened:equal(nr))
    assert.equal(nr:public(), opened:public())
    local no, err, ename = core.key.open_sealed(sealed, other)
    assert.is_nil(no)
    assert.equal("EBADMSG", ename)
    assert.matches("does not open with this node's key", err, 1, true)
    no, err, ename = core.key.open_sealed("AAAA", node)
    assert.equal("EINVAL", ename)
  end)

  it("saves key files with mode 0600 and refuses to load readable ones", function()
    local dir = testns.sh("mktemp -d")
    local path = dir .. "/node.key"
    local k = core.key.generate()
    assert.is_true(k:save(path))
    assert.equal("600", testns.sh("stat -c %a " .. path))
    assert.equal(k:public(), testns.sh("wg pubkey < " .. path))
    assert.is_true(core.key.load(path):equal(k))
    testns.sh("chmod 644 " .. path)
    local no, err, ename = core.key.load(path)
    assert.is_nil(no)
    assert.equal("EPERM", ename)
    assert.matches("readable by others", err, 1, true)
    testns.sh("rm -rf " .. dir)
  end)
end)
