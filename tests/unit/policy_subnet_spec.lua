-- The default subnet policy: the lowest free /24 (and a matching /64).
local policy = require "zmesh.policy"

local subnet = assert(policy.load("subnet", { hooks = { "subnet" } }))

local function req(p)
  local r = { node_id = "n", ip_range = "10.1.0.0/16", used = {}, used_ipv6 = {},
    usable = function() return true end }
  for k, v in pairs(p or {}) do r[k] = v end
  return r
end

describe("policy subnet", function()
  it("starts at x.x.1.0/24 and skips subnets in use", function()
    assert.same({ subnet = "10.1.1.0/24" }, subnet.subnet(req()))
    assert.same({ subnet = "10.1.3.0/24" },
      subnet.subnet(req({ used = { ["10.1.1.0/24"] = true, ["10.1.2.0/24"] = true } })))
  end)

  it("takes x.x.0.0/24 last, and skips what the caller calls unusable", function()
    local used = {}
    for i = 1, 3 do used["10.1." .. i .. ".0/24"] = true end
    assert.same({ subnet = "10.1.0.0/24" }, subnet.subnet(req({ ip_range = "10.1.0.0/22", used = used })))
    assert.same({ subnet = "10.1.2.0/24" }, subnet.subnet(req({
      usable = function(c) return c ~= "10.1.1.0/24" end })))
  end)

  it("says when the range is full", function()
    local r, why = subnet.subnet(req({ ip_range = "10.1.0.0/24", used = { ["10.1.0.0/24"] = true } }))
    assert.is_nil(r)
    assert.equal("ip_range 10.1.0.0/24 has no free /24 left", why)
  end)

  it("gives the /64 with the /24's index, else the lowest free one", function()
    assert.same({ subnet = "10.1.5.0/24", ipv6_subnet = "fd00:1:0:5::/64" },
      subnet.subnet(req({ ipv6_range = "fd00:1::/48", used = (function()
        local u = {}
        for i = 1, 4 do u["10.1." .. i .. ".0/24"] = true end
        return u
      end)() })))
    assert.same({ subnet = "10.1.1.0/24", ipv6_subnet = "fd00:1::/64" },
      subnet.subnet(req({ ipv6_range = "fd00:1::/48", used_ipv6 = { ["fd00:1:0:1::/64"] = true } })))
  end)

  it("answers a fixed /24 back and picks its /64", function()
    assert.same({ subnet = "10.1.200.0/24", ipv6_subnet = "fd00:1:0:c8::/64" },
      subnet.subnet(req({ subnet = "10.1.200.0/24", ipv6_range = "fd00:1::/48" })))
  end)
end)
