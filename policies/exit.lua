-- Policy "exit": does every NR break out to the Internet through its own
-- node, or does the whole network leave through one sole exit NR?
--
-- Contract (checked by zmesh.net.policies; a breach names this file and line):
--
--   exit(req) → node_id of the sole exit NR, or a list of node_ids (the
--               exit, then its fallbacks in order), or nil for local breakout
--     req (read-only): {
--       chosen = "n3", { "n3", "n1" } or nil,  -- what the user set with
--                                           -- `zmesh net set-exit`
--       nodes = { { node_id = "n1", role = "public"|"hidden" }, … },  -- sorted
--     }
--     Every id must be an NR in req.nodes, listed once. With a sole exit,
--     every other NR routes 0.0.0.0/0 and ::/0 into the mesh towards it
--     (through its aggregator when either end is hidden), and the exit NR
--     masquerades the network's traffic out of its own node. When the exit
--     in use stops carrying traffic to the Internet, the nodes' daemons
--     move to the next candidate that does (policy "failover" says when).
--
-- Default: the user's choice, as it is.
local function exit(req)
  return req.chosen
end

return { name = "exit", version = 2, exit = exit }
