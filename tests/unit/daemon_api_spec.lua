-- The daemon's API as routes, its error answers, its worker's replies
-- and its metrics text: no sockets, no kernel.
local fake_core = require "fake_core"

describe("daemon API routes", function()
  local api, json, check
  before_each(function()
    local req = fake_core.loader(fake_core.new())
    api, json, check = req("zmesh.daemon.api"), req("zmesh.json"), req("zmesh.check")
  end)

  local function route(method, path, body, query)
    return api.route { method = method, path = path, body = body, query = query or {} }
  end

  it("turns reads into reads and changes into jobs", function()
    assert.same("node.facts", route("GET", "/v1/node").read.entry)
    assert.same("nr.list", route("GET", "/v1/nrs").read.entry)
    assert.same({ net_id = "abc" }, route("GET", "/v1/nrs/abc").read.params)
    assert.is_true(route("GET", "/v1/status").status_view)
    assert.is_true(route("GET", "/metrics").metrics_view)
    local r = route("PUT", "/v1/nrs/abc", '{"subnet": "10.1.1.0/24"}')
    assert.equal("nr.apply", r.job.entry)
    assert.same({ net_id = "abc", subnet = "10.1.1.0/24" }, r.job.params)
    assert.equal("nr.plan", route("PUT", "/v1/nrs/abc", "{}", { dry_run = "1" }).job.entry)
    r = route("DELETE", "/v1/nrs/abc", nil, { dry_run = "1" })
    assert.same({ net_id = "abc", dry_run = true }, r.job.params)
    r = route("PUT", "/v1/nrs/abc/containers/c1", '{"ip": "10.1.1.10"}')
    assert.same({ net_id = "abc", netns = "c1", ip = "10.1.1.10" }, r.job.params)
    r = route("DELETE", "/v1/nrs/abc/containers/c1", nil, { delete = "1" })
    assert.same({ net_id = "abc", netns = "c1", delete = true }, r.job.params)
    assert.equal("nr.check", route("POST", "/v1/call/nr.check").job.entry)
    -- Reads stay reads when called by name.
    assert.equal("nr.list", route("POST", "/v1/call/nr.list", "{}").read.entry)
  end)

  it("answers bad requests with 400, 404 and 405, naming the field", function()
    local r = route("PUT", "/v1/nrs/ABC", "{}")
    assert.equal(400, r.status)
    assert.equal("net_id", r.body.field)
    r = route("PUT", "/v1/nrs/abc", '{"net_id": "xyz"}')
    assert.equal(400, r.status)
    assert.matches("another NR", r.body.error)
    assert.equal(400, route("PUT", "/v1/nrs/abc", "[1]").status)
    assert.equal(400, route("PUT", "/v1/nrs/abc", "{bad").status)
    assert.equal(400, route("PUT", "/v1/nrs/abc").status)
    assert.equal(404, route("GET", "/v2/whatever").status)
    assert.equal(404, route("POST", "/v1/call/nope.nope").status)
    r = route("POST", "/v1/nrs/abc")
    assert.equal(405, r.status)
    assert.equal("DELETE, GET, PUT", r.headers.Allow)
  end)

  it("maps an entry point's failure to its HTTP status by what raised it", function()
    local ok, err = pcall(check.fail, "subnet", "10.1.1.0/33", "invalid prefix length")
    assert.is_false(ok)
    local a = api.failure("nr.apply: " .. err)
    assert.equal(400, a.status)
    assert.equal("subnet", a.body.field)
    ok, err = pcall(check.conflict, "wireguard_listen_port", 51820, "already used by NR x")
    assert.equal(409, api.failure(err).status)
    ok, err = pcall(check.not_found, "net_id", "abc", "no such NR on this node")
    assert.equal(404, api.failure(err).status)
    -- An unknown field is bad input too, named (a key-shaped name is not).
    ok, err = pcall(check.known_fields, { ip = "10.1.1.10", bogus = 1 }, { "ip" })
    a = api.failure("container.attach: " .. err)
    assert.equal(400, a.status)
    assert.equal("bogus", a.body.field)
    ok, err = pcall(check.known_fields, check.at({ [string.rep("k", 43) .. "="] = 1 }, "peers[2]"), { "ip" })
    a = api.failure(err)
    assert.equal(400, a.status)
    assert.equal("peers[2]", a.body.field)
    assert.matches("not shown", a.body.error)
    -- A message check did not raise is a system failure.
    a = api.failure("apply failed at 'create namespace n-abc': EPERM: Operation not permitted")
    assert.equal(500, a.status)
    assert.is_nil(a.body.field)
    -- The worker's own classification wins when given.
    assert.equal(409, api.failure("x", { kind = "conflict", field = "f" }).status)
    assert.equal(500, api.failure("x", false).status)
  end)

  it("answers a delete of nothing with 404", function()
    local r = route("DELETE", "/v1/nrs/abc")
    assert.equal(404, r.shape({ removed = false }).status)
    assert.is_nil(r.shape({ removed = true }))
    r = route("DELETE", "/v1/nrs/abc/containers/c1")
    assert.equal(404, r.shape({ detached = false }).status)
    -- The plan of deleting nothing is the same 404; a plan with steps is not.
    r = route("DELETE", "/v1/nrs/abc", nil, { dry_run = "1" })
    assert.equal(404, r.shape({ changes = {} }).status)
    assert.is_nil(r.shape({ changes = { "delete netns n-abc" } }))
    r = route("DELETE", "/v1/nrs/abc/containers/c1", nil, { dry_run = "1" })
    assert.equal(404, r.shape({ attached = false, changes = {} }).status)
    assert.is_nil(r.shape({ attached = true, changes = {} }))
    assert.is_nil(r.shape({ attached = false, changes = { "delete link" } }))
  end)
end)

describe("daemon worker", function()
  local worker, json, dir
  before_each(function()
    local p = io.popen("mktemp -d")
    dir = p:read("l")
    p:close()
    local fake = fake_core.new()
    local req = fake_core.loader(fake)
    req("zmesh.node.context").use_config(fake_core.node_config(dir))
    worker, json = req("zmesh.daemon.worker"), req("zmesh.json")
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("answers each job line with its id, result or classified error", function()
    local r = worker.handle(json.encode({ id = 7, entry = "node.start", params = json.object() }))
    assert.equal(7, r.id)
    assert.is_true(r.ok)
    assert.equal("n1", r.result.node_id)
    r = worker.handle(json.encode({ id = 8, entry = "nr.remove", params = { net_id = "BAD" } }))
    assert.is_false(r.ok)
    assert.equal("input", r.kind)
    assert.equal("net_id", r.field)
    r = worker.handle(json.encode({ id = 9, entry = "nr.status", params = { net_id = "abc" } }))
    assert.equal("not_found", r.kind)
    r = worker.handle("not json")
    assert.is_false(r.ok)
  end)

  it("runs a stream of jobs in order", function()
    local lines = {
      json.encode({ id = 1, entry = "node.start", params = json.object() }),
      json.encode({ id = 2, entry = "nr.list", params = json.object() }),
    }
    local input = { lines = function() local i = 0 return function() i = i + 1 return lines[i] end end }
    local out = {}
    local output = { write = function(_, ...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end,
      flush = function() end }
    worker.run(input, output)
    local text = table.concat(out)
    local ids = {}
    for line in text:gmatch("[^\n]+") do ids[#ids + 1] = json.decode(line).id end
    assert.same({ 1, 2 }, ids)
  end)
end)

describe("daemon metrics", function()
  it("renders Prometheus text with sorted, escaped labels", function()
    local metrics = require "zmesh.daemon.metrics"
    local m = metrics.new()
    m:declare("zmesh_repairs_total", "counter", "repairs")
    m:add("zmesh_repairs_total", { object = "nr", net_id = "abc" })
    m:add("zmesh_repairs_total", { object = "nr", net_id = "abc" }, 2)
    m:add("zmesh_repairs_total", { object = 'a"b' })
    m:declare("zmesh_up", "gauge", "up")
    m:set("zmesh_up", nil, 1)
    assert.equal(table.concat({
      "# HELP zmesh_repairs_total repairs",
      "# TYPE zmesh_repairs_total counter",
      'zmesh_repairs_total{net_id="abc",object="nr"} 3',
      'zmesh_repairs_total{object="a\\"b"} 1',
      "# HELP zmesh_up up",
      "# TYPE zmesh_up gauge",
      "zmesh_up 1",
    }, "\n") .. "\n", m:render())
  end)
end)
