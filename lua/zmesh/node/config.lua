-- The node's own configuration, written by the farmer: identity, uplink,
-- WireGuard port range and backend, where state lives. JSON, by default
-- /etc/zmesh/node.json ($ZMESH_NODE_CONFIG or the `config` parameter of
-- the node entry points override it).
local check = require "zmesh.check"
local json = require "zmesh.json"

local config = {}

config.DEFAULT_PATH = "/etc/zmesh/node.json"

local defaults = {
  state_dir = "/var/lib/zmesh",   -- node key, desired state (survive reboots)
  run_dir = "/run/zmesh",         -- lock, firewall records, daemon logs, socket
  wireguard_backend = "auto",
  listen_ports = { min = 51820, max = 52819 },
  reconcile_interval = 5,         -- seconds between the daemon's repairs
}

-- The uplink: static addresses and gateways, and/or DHCP (IPv4) and
-- router advertisements (IPv6), whose results the daemon's clients write
-- into run_dir (zmesh.daemon.dhcp) and the ndmz's desired state takes up
-- (zmesh.node.ndmz); static settings win over what a server says. mtu:
-- the ndmz uplink's MTU, fixed (else the server's, else the NIC's).
local function check_uplink(u)
  local at = check.at(u, "uplink")
  check.known_fields(at, { "mode", "nic", "addresses", "gateway", "gateway6", "dhcp", "ra", "mtu" })
  local out = {}
  out.mode = check.oneof(at, "mode", { "macvlan", "move" }, true) or "macvlan"
  out.nic = check.string(at, "nic")
  if #out.nic > 15 or out.nic:find("[/:%s]") then check.fail("uplink.nic", out.nic, "not an interface name") end
  out.dhcp = check.boolean(at, "dhcp", true) or false
  out.ra = check.boolean(at, "ra", true) or false
  out.addresses = {}
  for i, a in ipairs(check.array(at, "addresses", out.dhcp or out.ra, "addresses") or {}) do
    out.addresses[i] = check.interface_addr(a, string.format("uplink.addresses[%d]", i))
  end
  if #out.addresses == 0 and not (out.dhcp or out.ra) then
    check.fail("uplink.addresses", nil, "at least one address is needed (or \"dhcp\": true, \"ra\": true)")
  end
  if u.gateway ~= nil then out.gateway = check.address(u.gateway, "uplink.gateway", 4) end
  if u.gateway6 ~= nil then out.gateway6 = check.address(u.gateway6, "uplink.gateway6", 6) end
  out.mtu = check.integer(at, "mtu", 1280, 65535, true)
  return out
end

-- A nats:// URL: host (name, IPv4 or [IPv6]) and optional port; no
-- credentials in it (they belong in a 0600 file).
local function check_url(u, field)
  if type(u) ~= "string" then check.fail(field, u, "must be a nats://HOST[:PORT] URL") end
  local rest = u:match("^nats://(.+)$")
  if not rest then check.fail(field, u, "must be a nats://HOST[:PORT] URL") end
  if rest:find("@", 1, true) then
    -- Never echoed: what stands before the @ is a password.
    check.fail(field, "nats://(credentials, not shown)@" .. rest:gsub("^.*@", ""),
      "holds credentials: give them in a 0600 file (control.nkey, control.creds or control.password_file)")
  end
  local host, port = rest:match("^(%[[%x:]+%])(.*)$")
  if not host then host, port = rest:match("^([%w%.%-]+)(.*)$") end
  if not host or not (port == "" or port:match("^:%d+$")) then
    check.fail(field, u, "must be a nats://HOST[:PORT] URL")
  end
  if port ~= "" and (tonumber(port:sub(2)) < 1 or tonumber(port:sub(2)) > 65535) then
    check.fail(field, u, "port must be 1..65535")
  end
  return u
end

-- A credentials file: an absolute path to a regular file of mode 0600
-- (or 0400), so that no other user of the node can read it.
local function check_secret_file(path, field)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    check.fail(field, path, "must be the absolute path of a file")
  end
  local uv = require "luv"
  local st, err = uv.fs_stat(path)
  if not st then check.fail(field, path, "cannot be read: " .. tostring(err)) end
  if st.type ~= "file" then check.fail(field, path, "is not a regular file") end
  if st.mode & tonumber("077", 8) ~= 0 then
    check.fail(field, path, string.format("has mode %o: credentials must be 0600", st.mode & tonumber("777", 8)))
  end
  return path
end

local function seconds(at, field, lo, hi, default)
  local c = check.at(at, "control")
  local v = at[field]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    check.fail(check.name(c, field), v, string.format("must be %g..%g seconds", lo, hi))
  end
  return v
end

-- The fleet's control plane (NATS JetStream, zmesh.control).
local function check_control(c)
  local at = check.at(c, "control")
  check.known_fields(at, { "urls", "nkey", "creds", "user", "password_file", "bucket", "status_interval",
    "retry_min", "retry_max", "ping_interval", "connect_timeout" })
  local out = { urls = {} }
  local urls = check.array(at, "urls", false, "nats:// URLs")
  if #urls == 0 or #urls > 16 then check.fail("control.urls", nil, "must list 1..16 nats:// URLs") end
  for i, u in ipairs(urls) do out.urls[i] = check_url(u, string.format("control.urls[%d]", i)) end
  local given = 0
  if c.nkey ~= nil then out.nkey, given = check_secret_file(c.nkey, "control.nkey"), given + 1 end
  if c.creds ~= nil then out.creds, given = check_secret_file(c.creds, "control.creds"), given + 1 end
  if c.user ~= nil or c.password_file ~= nil then
    out.user = check.string(at, "user")
    if c.password_file == nil then check.fail("control.password_file", nil, "missing (control.user needs it)") end
    out.password_file = check_secret_file(c.password_file, "control.password_file")
    given = given + 1
  end
  if given ~= 1 then
    check.fail("control", nil, "needs the node's credentials: one of nkey, creds, or user and password_file")
  end
  out.bucket = check.string(at, "bucket", true) or "zmesh"
  if #out.bucket > 48 or not out.bucket:match("^[A-Za-z0-9_-]+$") then
    check.fail("control.bucket", out.bucket, "must be 1..48 of A-Z a-z 0-9 _ -")
  end
  out.status_interval = seconds(c, "status_interval", 0.5, 3600, 10)
  out.retry_min = seconds(c, "retry_min", 0.05, 60, 0.25)
  out.retry_max = seconds(c, "retry_max", out.retry_min, 3600, 5)
  out.ping_interval = seconds(c, "ping_interval", 0.5, 600, 3)
  out.connect_timeout = seconds(c, "connect_timeout", 0.1, 60, 2)
  return out
end

-- Validate a decoded node config; returns a normalised copy.
function config.validate(c)
  if not check.is_object(c) then error("node config must be a JSON object", 0) end
  check.known_fields(c, { "node_id", "uplink", "listen_ports", "force_role",
    "public_endpoints", "wireguard_backend", "state_dir", "run_dir", "policy_dirs", "socket",
    "reconcile_interval", "control" })
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
  -- The daemon's API socket (HTTP/1.1 + JSON, mode 0600).
  out.socket = check.string(c, "socket", true) or (out.run_dir .. "/zmesh.sock")
  if #out.socket > 107 then check.fail("socket", out.socket, "longer than a unix socket path may be (107)") end
  local interval = c.reconcile_interval
  if interval == nil then
    out.reconcile_interval = defaults.reconcile_interval
  elseif type(interval) ~= "number" or interval ~= interval or interval < 0.1 or interval > 3600 then
    check.fail("reconcile_interval", interval, "must be 0.1..3600 seconds")
  else
    out.reconcile_interval = interval
  end
  if c.control ~= nil then out.control = check_control(check.object(c, "control")) end
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
