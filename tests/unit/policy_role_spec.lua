-- The default role policy: public or hidden from a node's facts, and the
-- address one node dials to reach another.
local policy = require "zmesh.policy"

local role = assert(policy.load("role", { hooks = { "role", "endpoint" } }))

local function node(addresses, extra)
  local n = { node_id = "x", addresses = addresses }
  for k, v in pairs(extra or {}) do n[k] = v end
  return n
end

describe("policy role", function()
  it("has a contract at the top of its file", function()
    local f = assert(io.open(role._file))
    local head = f:read(2000)
    f:close()
    assert.matches("Contract", head)
    assert.matches("role%(node%) → \"public\" | \"hidden\"", head)
  end)

  local cases = {
    { { "203.0.113.11/24" }, "public", "documentation IPv4 (the simulated Internet)" },
    { { "198.51.100.3/24" }, "public", "documentation IPv4" },
    { { "8.8.4.4/24" }, "public", "global IPv4" },
    { { "2a01:4f8::1/64" }, "public", "global IPv6" },
    { { "2001:db8::5/64" }, "public", "documentation IPv6" },
    { { "192.168.1.5/24" }, "hidden", "RFC 1918 192.168/16" },
    { { "10.2.3.4/8" }, "hidden", "RFC 1918 10/8" },
    { { "172.20.1.1/16" }, "hidden", "RFC 1918 172.16/12" },
    { { "100.72.0.9/10" }, "hidden", "CGNAT" },
    { { "fd12::9/64" }, "hidden", "ULA" },
    { { "fe80::9/64" }, "hidden", "link-local IPv6" },
    { { "169.254.3.3/16" }, "hidden", "link-local IPv4" },
    { { "192.168.1.5/24", "fd00::5/64", "2a01:4f8::5/64" }, "public", "NAT44 with global IPv6" },
  }
  for _, c in ipairs(cases) do
    it("calls " .. c[3] .. " " .. c[2], function()
      assert.equal(c[2], policy.call(role, "role", node(c[1])))
    end)
  end

  it("lets the farmer force the role, and counts public_endpoints as public", function()
    assert.equal("hidden", role.role(node({ "203.0.113.1/24" }, { force_role = "hidden" })))
    assert.equal("public", role.role(node({ "192.168.1.1/24" }, { force_role = "public" })))
    assert.equal("public", role.role(node({ "192.168.1.1/24" }, { public_endpoints = { "192.0.2.9" } })))
  end)

  describe("endpoint", function()
    local dual = node({ "203.0.113.1/24", "2001:db8::1/64" })
    local v4 = node({ "198.51.100.2/24" })
    local natted = node({ "192.168.1.3/24" })
    local natted_v6 = node({ "192.168.1.3/24", "2a01:4f8::3/64" })
    local ula_only = node({ "fd00::3/64" })

    it("uses IPv6 only when both ends have it", function()
      assert.equal("2001:db8::1", role.endpoint(dual, node({ "203.0.113.7/24", "2001:db8::1/64" })))
      assert.equal("2001:db8::1", role.endpoint(natted_v6, dual))
      assert.equal("203.0.113.1", role.endpoint(v4, dual))
      assert.equal("203.0.113.1", role.endpoint(natted, dual))
      assert.equal("198.51.100.2", role.endpoint(dual, v4))
    end)

    it("returns nil when no family is shared", function()
      assert.is_nil(role.endpoint(ula_only, v4))
      assert.is_nil(role.endpoint(natted, node({ "2a01:4f8::9/64" })))
    end)

    it("dials the farmer's public_endpoints first, and a forced public node's LAN address", function()
      assert.equal("192.0.2.9", role.endpoint(v4, node({ "10.0.0.9/8" }, { public_endpoints = { "192.0.2.9" } })))
      assert.equal("192.168.1.20", role.endpoint(natted, node({ "192.168.1.20/24" }, { force_role = "public" })))
    end)

    it("gives a device (no addresses) IPv4 first", function()
      assert.equal("203.0.113.1", role.endpoint({ node_id = "access:l", addresses = {} }, dual))
      assert.equal("2a01:4f8::9", role.endpoint({ node_id = "access:l", addresses = {} }, node({ "2a01:4f8::9/64" })))
    end)
  end)
end)
