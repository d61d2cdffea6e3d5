-- The node's own configuration, written by the farmer: identity, uplink,
-- WireGuard port range and backend, where state lives. JSON, by default
-- /etc/zmesh/node.json ($ZMESH_NODE_CONFIG or the `config` parameter of
-- the node entry points override it).
local check = require "zmesh.check"
local json = require "zmesh.json"

local config = {}

config.DEFAULT_PATH = "/etc/zmesh/node.json"

local defaults = {
  state_dir = "/var/lib/zmesh",   -- node key (mode 0600)
  run_dir = "/run/zmesh",         -- applied NR configs, daemon logs
  wireguard_backend = "auto",
  listen_ports = { min = 51820, max = 52819 },
}

local function check_uplink(u)
  local at = check.at(u, "uplink")
  check.known_fields(at, { "mode", "nic", "addresses", "gateway", "gateway6" })
  local out = {}
  out.mode = check.oneof(at, "mode", { "macvlan", "move" }, true) or "macvlan"
  out.nic = check.string(at, "nic")
  if #out.nic > 15 or out.nic:find("[/:%s]") then check.fail("uplink.nic", out.nic, "not an interface name") end
  out.addresses = {}
  for i, a in ipairs(check.array(at, "addresses", false, "addresses")) do
    out.addresses[i] = check.interface_addr(a, string.format("uplink.addresses[%d]", i))
  end
  if #out.addresses == 0 then check.fail("uplink.addresses", nil, "at least one address is needed") end
  if u.gateway ~= nil then out.gateway = check.address(u.gateway, "uplink.gateway", 4) end
  if u.gateway6 ~= nil then out.gateway6 = check.address(u.gateway6, "uplink.gateway6", 6) end
  return out
end

-- Validate a decoded node config; returns a normalised copy.
function config.validate(c)
  if not check.is_object(c) then error("node config must be a JSON object", 0) end
  check.known_fields(c, { "node_id", "uplink", "listen_ports", "force_role",
    "public_endpoints", "wireguard_backend", "state_dir", "run_dir", "policy_dirs" })
  local out = {}
  out.node_id = check.node_id(check.string(c, "node_id"), "node_id")
  out.uplink = check_uplink(check.object(c, "uplink"))
  local ports = check.object(c, "listen_ports", true) or defaults.listen_ports
  local at = check.at(ports, "listen_ports")
  check.known_fields(at, { "min", "max" })
  out.listen_ports = {
    min = check.integer(at, "min", 1, 65535),
    max = check.integer(at, "max", 1, 65535),
  }
  if out.listen_ports.min > out.listen_ports.max then
    check.fail("listen_ports", string.format("%d..%d", out.listen_ports.min, out.listen_ports.max),
      "min is above max")
  end
  out.force_role = check.oneof(c, "force_role", { "public", "hidden" }, true)
  if c.public_endpoints ~= nil then
    out.public_endpoints = {}
    for i, a in ipairs(check.array(c, "public_endpoints", false, "addresses")) do
      out.public_endpoints[i] = check.address(a, string.format("public_endpoints[%d]", i))
    end
  end
  out.wireguard_backend = check.oneof(c, "wireguard_backend", { "auto", "kernel", "userspace" }, true)
    or defaults.wireguard_backend
  out.policy_dirs = {}
  for i, d in ipairs(check.array(c, "policy_dirs", true, "directories") or {}) do
    if type(d) ~= "string" or d == "" then
      check.fail(string.format("policy_dirs[%d]", i), d, "must be a directory path")
    end
    out.policy_dirs[i] = d
  end
  out.state_dir = check.string(c, "state_dir", true) or defaults.state_dir
  out.run_dir = check.string(c, "run_dir", true) or defaults.run_dir
  return out
end

-- Load and validate; PATH defaults to $ZMESH_NODE_CONFIG or DEFAULT_PATH.
function config.load(path)
  path = path or os.getenv("ZMESH_NODE_CONFIG") or config.DEFAULT_PATH
  local c, err = json.read_file(path)
  if not c then error("node config: " .. tostring(err), 0) end
  local ok, res = pcall(config.validate, c)
  if not ok then error(path .. ": " .. tostring(res), 0) end
  res.path = path
  return res
end

return config
