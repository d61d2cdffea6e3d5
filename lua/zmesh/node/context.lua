-- What every node-side entry point needs: the node config, where state
-- lives, and the node's own key (for opening sealed NR keys).
local config = require "zmesh.node.config"
local core = require "zmesh.core"
local json = require "zmesh.json"
local store = require "zmesh.node.store"

local context = {}

local chosen_path, pinned

-- Use PATH as the node config from now on (the CLI's --config).
function context.use_config(path) chosen_path, pinned = path, nil end

-- Use CFG (a node config as zmesh.node.config loads it) from now on,
-- not the file: the daemon's writer runs on the config the daemon has in
-- force, so that an edit of the file takes effect on SIGHUP, and a bad
-- edit not at all.
function context.pin(cfg)
  pinned = json.encode(cfg)
end

-- PARAMS.config: a path to the node config (else the one chosen with
-- use_config, else $ZMESH_NODE_CONFIG, else /etc/zmesh/node.json).
function context.load(params)
  local path = params and params.config or chosen_path
  if path ~= nil and type(path) ~= "string" then
    error("config: must be the path of the node config file", 0)
  end
  -- (A copy each time: callers may change what they get.)
  local cfg = (pinned and not (params and params.config)) and json.decode(pinned) or config.load(path)
  return {
    cfg = cfg,
    key_path = cfg.state_dir .. "/node.key",
    -- Desired state survives reboots (zmesh.node.store); what describes
    -- the running kernel state goes with it (run_dir).
    nr_dir = cfg.state_dir .. "/nrs",
    containers_dir = cfg.state_dir .. "/containers",
    log_dir = cfg.run_dir .. "/log",
    -- Stored files found bad and set aside, one line each.
    problems = {},
  }
end

-- Files kept per NR, removed with it.
function context.nr_file(ctx, net_id) return ctx.nr_dir .. "/" .. net_id .. ".json" end
function context.wg_log(ctx, net_id) return ctx.log_dir .. "/w-" .. net_id .. ".log" end
-- Present while the node is stopped (node.stop until node.start): the
-- daemon's converge leaves a stopped node stopped.
function context.stopped_file(ctx) return ctx.cfg.state_dir .. "/stopped" end
function context.attachments_file(ctx, net_id) return ctx.containers_dir .. "/" .. net_id .. ".json" end
function context.choice_file(ctx, net_id) return ctx.cfg.state_dir .. "/failover/" .. net_id .. ".json" end

-- Stored files set aside as bad (<file>.corrupt) that are still there:
-- {lines, nrs = {net_id -> true}} (an NR whose config was set aside).
-- Durable, unlike ctx.problems: whichever job found the file bad, every
-- converge reports it until an operator removes the .corrupt file or
-- the NR is removed.
function context.set_aside(ctx)
  local out = { lines = {}, nrs = {} }
  for _, dir in ipairs({ ctx.nr_dir, ctx.containers_dir }) do
    local files = core.fs.list(dir) or {}
    table.sort(files)
    for _, file in ipairs(files) do
      local id = file:match("^([a-z0-9]+)%.json%.corrupt$")
      if id then
        local what = "; its containers' links are left as they are"
        if dir == ctx.nr_dir and core.fs.stat(context.nr_file(ctx, id)) then
          what = "; its NR's config was applied again since"
        elseif dir == ctx.nr_dir then
          out.nrs[id] = true
          what = "; its NR is left running as it was, unmanaged, until its config is applied again"
        end
        out.lines[#out.lines + 1] = string.format("%s/%s: a stored file found bad and set aside%s", dir, file, what)
      end
    end
  end
  return out
end

-- The firewall ruleset the policy gives for ROLE ("nr" or "ndmz"); a
-- policy that fails or breaks its contract stops everything, named.
function context.firewall(ctx, role, fw_ctx)
  local firewall = require "zmesh.firewall"
  local rules, err = firewall.from_policy(role, fw_ctx, { path = ctx.cfg.policy_dirs })
  if not rules then error("firewall policy: " .. tostring(err), 0) end
  return rules
end

-- The node key; nil and a message when the node was never started.
function context.node_key(ctx)
  local key, err = core.key.load(ctx.key_path)
  if not key then
    return nil, "the node has no key yet (run node.start first): " .. tostring(err)
  end
  return key
end

-- Load the node key, making it (mode 0600) the first time.
function context.ensure_node_key(ctx)
  local key = core.key.load(ctx.key_path)
  if key then return key end
  assert(core.fs.mkdir(ctx.cfg.state_dir, tonumber("700", 8)))
  key = core.key.generate()
  local ok, err = key:save(ctx.key_path)
  if not ok then error("cannot save the node key: " .. tostring(err), 0) end
  return key
end

-- Applied NR configs (desired state, durable): net_id → the config as
-- applied. Only sealed keys are in them.
function context.saved_nrs(ctx)
  return store.read_all(ctx.nr_dir, "nr", ctx.problems)
end

-- The applied config of NET_ID's NR, or nil.
function context.saved_nr(ctx, net_id)
  return store.read(context.nr_file(ctx, net_id), "nr", ctx.problems)
end

-- The listen port of every applied NR: net_id → port (or false).
function context.saved_listen_ports(ctx)
  return store.read_all(ctx.nr_dir, "nr", ctx.problems, "wireguard_listen_port")
end

function context.save_nr(ctx, raw)
  store.write(context.nr_file(ctx, raw.net_id), "nr", raw, { unless_same = true })
end

-- The containers attached to NET_ID's NR: netns → {netns, ip, ip6, port}.
-- The port (the NR end of the container's veth) is allocated once and
-- recorded, so that two containers never share one and a detach only
-- ever touches its own.
-- The container namespaces recorded for every NR: net_id → {netns →
-- true}; read-only, no copy (the check of every attach reads them all).
function context.attached_sets(ctx)
  return store.read_all(ctx.containers_dir, "containers", ctx.problems, store.KEYS)
end

function context.attachments(ctx, net_id)
  return store.read(context.attachments_file(ctx, net_id), "containers", ctx.problems) or {}
end

-- The daemon's failover choice for NET_ID's NR (zmesh.nr.paths), as
-- stored: which aggregator and exit it routes through now. Durable, so
-- that a restart or a reboot keeps the paths the evidence gave.
function context.choice(ctx, net_id)
  return store.read(context.choice_file(ctx, net_id), "failover", ctx.problems)
end

function context.save_choice(ctx, net_id, choice)
  store.write(context.choice_file(ctx, net_id), "failover", choice, { unless_same = true })
end

function context.save_attachments(ctx, net_id, records)
  local path = context.attachments_file(ctx, net_id)
  if next(records) == nil then return store.remove(path) end
  store.write(path, "containers", json.object(records), { unless_same = true })
end

return context
