-- Where the daemon's and `zmesh node check`'s probes say traffic goes
-- (zmesh.control.probe): the peer that routes another NR's subnet, which
-- for a hidden NR is its primary aggregator even where a standby peer
-- carries its mesh address.
local probe = require "zmesh.control.probe"

describe("probe paths", function()
  local cfg = {
    node_id = "n1",
    peers = {
      { node_id = "n2", subnet = "10.1.2.0/24", allowed_ips = { "10.1.2.0/24", "100.64.1.2/32", "10.1.4.0/24" } },
      { node_id = "n4", subnet = "10.1.4.0/24", allowed_ips = { "100.64.1.4/32" } },
      { node_id = "access:laptop", allowed_ips = { "100.64.200.1/32" } },
    },
    failover = { nodes = {
      n1 = { mesh = "100.64.1.1", owned = { "10.1.1.0/24", "100.64.1.1/32" } },
      n2 = { mesh = "100.64.1.2", owned = { "10.1.2.0/24", "100.64.1.2/32" } },
      n4 = { mesh = "100.64.1.4", owned = { "10.1.4.0/24", "100.64.1.4/32", "fd00:1:0:4::/64" },
        aggregators = { "n2", "n1" } },
      ["access:laptop"] = { mesh = "100.64.200.1", device = true, owned = { "100.64.200.1/32" } },
    } },
  }

  it("names every other NR's subnet gateway, not this NR's and not devices", function()
    assert.same({ n2 = "10.1.2.1", n4 = "10.1.4.1" }, probe.subnet_addrs(cfg))
    -- Without failover facts: the peers' subnets.
    assert.same({ n2 = "10.1.2.1", n4 = "10.1.4.1" }, probe.subnet_addrs({ node_id = "n1", peers = cfg.peers }))
  end)

  it("routes a hidden NR's subnet through its primary, its mesh address through the standby peer", function()
    local dump = { { public_key = "K2", allowed_ips = cfg.peers[1].allowed_ips },
      { public_key = "K4", allowed_ips = cfg.peers[2].allowed_ips } }
    local subnet, mesh = probe.subnet_addrs(cfg), probe.targets(cfg)
    assert.equal("K2", probe.peer_for(dump, subnet.n4).public_key)
    assert.equal("K4", probe.peer_for(dump, mesh.n4).public_key)
    assert.is_nil(probe.peer_for(dump, "192.0.2.1"))
  end)
end)
