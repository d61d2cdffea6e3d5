-- `zmesh daemon`: the node agent, in the foreground.
return {
  summary = "run the node agent: HTTP API on a unix socket, one writer, repairs",
  usage = "[--config PATH]",
  help = [[
Runs this node's agent in the foreground until SIGTERM or SIGINT (SIGHUP
reloads the node config). It is the only writer on the node: every change
— an API call, a repair — goes through one queue and the same apply step
as the one-shot commands, under the node lock.

  --config PATH   the node config (else $ZMESH_NODE_CONFIG, else
                  /etc/zmesh/node.json)

At start it converges the ndmz and every NR and container attachment
stored in the node's state_dir (boot restore); then, every
reconcile_interval seconds (node config, default 5), it puts back what
changed behind its back: a dead wireguard-go, a deleted route, a changed
nft rule. The API is HTTP/1.1 + JSON on the unix socket of the node
config's `socket` (default /run/zmesh/zmesh.sock, mode 0600):

  GET    /v1/node  /v1/status  /v1/nrs  /v1/nrs/NET_ID  /metrics
  PUT    /v1/nrs/NET_ID[?dry_run=1]          (body: the NR config)
  DELETE /v1/nrs/NET_ID[?dry_run=1]
  PUT    /v1/nrs/NET_ID/containers/NETNS     (body: {"ip", "ip6", "create"})
  DELETE /v1/nrs/NET_ID/containers/NETNS[?delete=1&dry_run=1]
  POST   /v1/call/ENTRY                      (body: its parameters)

  curl --unix-socket /run/zmesh/zmesh.sock http://zmesh/v1/status

Errors are JSON {"error", "field"}: 400 bad input, 404 not found, 409 a
conflict, 500 a system failure. Logs go to standard error without
timestamps. Stopping or killing the daemon leaves the data plane as it
is.]],
  run = function(args)
    local config, worker
    local i = 1
    while args[i] do
      if args[i] == "--config" and args[i + 1] then
        config, i = args[i + 1], i + 2
      elseif args[i] == "--worker" then
        worker, i = true, i + 1
      else
        io.stderr:write("zmesh daemon: unexpected argument '", args[i], "' (see zmesh daemon --help)\n")
        return 2
      end
    end
    if worker then
      -- The daemon's writer process (zmesh.daemon.worker), not for users.
      if config then require("zmesh.node.context").use_config(config) end
      require("zmesh.daemon.worker").run(io.stdin, io.stdout)
      return 0
    end
    local ok, res = pcall(function() return require("zmesh.daemon").run({ config = config }) end)
    if not ok then
      io.stderr:write("zmesh daemon: ", tostring(res), "\n")
      return 1
    end
    return res
  end,
}
