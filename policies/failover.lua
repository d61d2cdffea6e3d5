-- Policy "failover": when a path counts as dead, and when healthy again.
--
-- Contract (loaded by the node's daemon, zmesh.daemon.failover, sandboxed
-- like every policy; a breach names this file and line, and the daemon
-- keeps the routes it has):
--
--   settings(ctx) → {
--     interval      = seconds between two probes of one target (0.05..10)
--     dead_after    = seconds without an answer after which a target is
--                     down (≥ 2 × interval)
--     hold          = seconds a target must answer without a gap before it
--                     counts as healthy again (0..3600)
--     fail_back     = true: traffic moves back to an earlier (preferred)
--                     aggregator or exit once it is healthy again; false:
--                     it stays where it is until that one fails
--     internet_targets = { "a.b.c.d", … }: what an exit candidate pings
--                     through its own uplink to tell whether it carries
--                     traffic to the Internet (1..8 IPv4 addresses)
--   }
--     ctx (read-only): { node_id = "n1", net_id = "abc", role = "public" |
--       "hidden", targets = n (how many paths this NR probes),
--       internet_targets = { … } or nil (from the network file) }
--
-- Default: a probe every 0.25 s; down after 2.5 s without an answer (ten
-- probes in a row lost: with 30 % loss that happens about once in 170,000
-- windows, so a lossy path does not flap); healthy again after 10 s without
-- a gap; fail back. Exits ping the network file's targets, else 1.1.1.1
-- and 9.9.9.9.

local function settings(ctx)
  local targets = ctx.internet_targets
  if targets == nil or #targets == 0 then targets = { "1.1.1.1", "9.9.9.9" } end
  return {
    interval = 0.25,
    dead_after = 2.5,
    hold = 10,
    fail_back = true,
    internet_targets = targets,
  }
end

return { name = "failover", version = 1, settings = settings }
