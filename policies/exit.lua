-- Policy "exit": does every NR break out to the Internet through its own
-- node, or does the whole network leave through one sole exit NR?
--
-- Contract (checked by zmesh.net.policies; a breach names this file and line):
--
--   exit(req) → node_id of the sole exit NR, or nil for local breakout
--     req (read-only): {
--       chosen = "n3" or nil,  -- what the user set with `zmesh net set-exit`
--       nodes = { { node_id = "n1", role = "public"|"hidden" }, … },  -- sorted
--     }
--     The answer must be the id of an NR in req.nodes. With a sole exit,
--     every other NR routes 0.0.0.0/0 and ::/0 into the mesh towards it
--     (through its aggregator when either end is hidden), and the exit NR
--     masquerades the network's traffic out of its own node.
--
-- Default: the user's choice, as it is.
local function exit(req)
  return req.chosen
end

return { name = "exit", version = 1, exit = exit }
