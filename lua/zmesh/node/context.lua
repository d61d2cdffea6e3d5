-- What every node-side entry point needs: the node config, where state
-- lives, and the node's own key (for opening sealed NR keys).
local config = require "zmesh.node.config"
local core = require "zmesh.core"
local json = require "zmesh.json"

local context = {}

local chosen_path

-- Use PATH as the node config from now on (the CLI's --config).
function context.use_config(path) chosen_path = path end

-- PARAMS.config: a path to the node config (else the one chosen with
-- use_config, else $ZMESH_NODE_CONFIG, else /etc/zmesh/node.json).
function context.load(params)
  local path = params and params.config or chosen_path
  if path ~= nil and type(path) ~= "string" then
    error("config: must be the path of the node config file", 0)
  end
  local cfg = config.load(path)
  return {
    cfg = cfg,
    key_path = cfg.state_dir .. "/node.key",
    nr_dir = cfg.run_dir .. "/nr",
    log_dir = cfg.run_dir .. "/log",
    firewall_dir = cfg.run_dir .. "/firewall",
    containers_dir = cfg.run_dir .. "/containers",
  }
end

-- Files kept per NR, removed with it.
function context.nr_file(ctx, net_id) return ctx.nr_dir .. "/" .. net_id .. ".json" end
function context.wg_log(ctx, net_id) return ctx.log_dir .. "/w-" .. net_id .. ".log" end
function context.firewall_record(ctx, ns) return ctx.firewall_dir .. "/" .. ns .. ".json" end
function context.attachments_file(ctx, net_id) return ctx.containers_dir .. "/" .. net_id .. ".json" end

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

-- Applied NR configs, kept so that a dead daemon can be restarted with its
-- configuration and the node knows its NRs. Only sealed keys are in them.
function context.saved_nrs(ctx)
  local out = {}
  local names = core.fs.list(ctx.nr_dir) or {}
  for _, file in ipairs(names) do
    local id = file:match("^([a-z0-9]+)%.json$")
    if id then
      local cfg = json.read_file(ctx.nr_dir .. "/" .. file)
      if cfg then out[id] = cfg end
    end
  end
  return out
end

local function save_json(dir, path, value)
  local ok, err = core.fs.mkdir(dir, tonumber("700", 8))
  if ok then ok, err = core.fs.write(path, json.encode(value, { pretty = true }) .. "\n",
    tonumber("600", 8)) end
  if not ok then error(err, 0) end
end

function context.save_nr(ctx, raw)
  save_json(ctx.nr_dir, context.nr_file(ctx, raw.net_id), raw)
end

-- The containers attached to NET_ID's NR: netns → {netns, ip, ip6, port}.
-- The port (the NR end of the container's veth) is allocated once and
-- recorded, so that two containers never share one and a detach only
-- ever touches its own.
function context.attachments(ctx, net_id)
  local path = context.attachments_file(ctx, net_id)
  if not core.fs.stat(path) then return {} end
  local t, err = json.read_file(path)
  if type(t) ~= "table" then error("container records: " .. tostring(err), 0) end
  return t
end

function context.save_attachments(ctx, net_id, records)
  local path = context.attachments_file(ctx, net_id)
  if next(records) == nil then
    local ok, err, ename = core.fs.remove(path)
    if not ok and ename ~= "ENOENT" then error(err, 0) end
    return
  end
  save_json(ctx.containers_dir, path, json.object(records))
end

return context
