-- Links against the real kernel, checked with `ip`.
local core = require "zmesh.core"
local json = require "zmesh.json"
local testns = require "testns"

local function ip_link(ns, name)
  local out, ok = testns.sh("ip -n " .. ns .. " -j -d link show dev " .. name)
  if not ok then return nil, out end
  return json.decode(out)[1]
end

describe("link", function()
  local A, B
  before_each(function()
    A, B = testns.name("la"), testns.name("lb")
    assert(core.netns.create(A))
    assert(core.netns.create(B))
  end)
  after_each(function() assert(testns.cleanup()) end)

  it("makes a veth pair across namespaces", function()
    assert.is_true(core.link.veth { ns = A, name = "va", peer = "vb", peer_ns = B, mtu = 1400 })
    local a, b = assert(ip_link(A, "va")), assert(ip_link(B, "vb"))
    assert.equal("veth", a.linkinfo.info_kind)
    assert.equal(1400, a.mtu)
    assert.equal(1400, b.mtu)
    local ok, err, ename = core.link.veth { ns = A, name = "va", peer = "vc", peer_ns = B }
    assert.is_nil(ok)
    assert.equal("EEXIST", ename)
    assert.matches("link 'va' in namespace " .. A, err, 1, true)
  end)

  it("makes bridges, enslaves, sets up, mtu, renames and moves", function()
    assert(core.link.veth { ns = A, name = "va", peer = "vb" })
    assert(core.link.bridge { ns = A, name = "br0" })
    assert.is_true(core.link.set { ns = A, name = "va", master = "br0", up = true, mtu = 1300 })
    local va = ip_link(A, "va")
    assert.equal("br0", va.master)
    assert.equal(1300, va.mtu)
    assert.is_truthy(table.concat(va.flags, ","):find("UP", 1, true))
    local dump = {}
    for _, l in ipairs(core.link.dump(A)) do dump[l.name] = l end
    assert.equal("br0", dump.va.master)
    assert.equal("bridge", dump.br0.kind)
    assert.equal("veth", dump.vb.kind)
    assert.is_true(dump.va.up)
    assert.is_true(core.link.set { ns = A, name = "va", master = false })
    assert.is_nil(ip_link(A, "va").master)
    assert.is_true(core.link.set { ns = A, name = "vb", netns = B, rename = "moved" })
    assert.is_nil(ip_link(A, "vb"))
    assert.equal("veth", ip_link(B, "moved").linkinfo.info_kind)
    local info = assert(core.link.get(A, "va"))
    assert.equal(0, info.link_netnsid)
  end)

  it("makes a macvlan on a parent in another namespace", function()
    assert(core.link.veth { ns = A, name = "nic", peer = "far", peer_ns = B })
    assert.is_true(core.link.macvlan { ns = B, name = "mv", parent = "nic", parent_ns = A })
    local mv = assert(ip_link(B, "mv"))
    assert.equal("macvlan", mv.linkinfo.info_kind)
    assert.equal("bridge", mv.linkinfo.info_data.mode)
  end)

  it("deletes, and says so when there is nothing to delete", function()
    assert(core.link.bridge { ns = A, name = "br0" })
    assert.is_true(core.link.delete { ns = A, name = "br0" })
    assert.is_nil(ip_link(A, "br0"))
    local ok, err, ename = core.link.delete { ns = A, name = "br0" }
    assert.is_nil(ok)
    assert.equal("ENODEV", ename)
    assert.matches("link 'br0'", err, 1, true)
  end)

  it("carries the kernel's extended-ack message", function()
    assert(core.link.bridge { ns = A, name = "br0" })
    assert(core.link.bridge { ns = A, name = "br1" })
    local ok, err, ename = core.link.set { ns = A, name = "br1", master = "br0" }
    assert.is_nil(ok)
    assert.equal("ELOOP", ename)
    assert.equal("ELOOP: link 'br1' in namespace " .. A ..
      ": Can not enslave a bridge to a bridge: Too many levels of symbolic links", err)
    local missing = { core.link.bridge { ns = testns.name("nope"), name = "x" } }
    assert.equal("ENOENT", missing[3])
  end)
end)
