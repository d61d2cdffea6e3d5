-- core.http: the daemon's HTTP/1.1 server on a unix socket (libmicrohttpd,
-- driven here by a luv loop the way the daemon drives it) and the CLI's
-- client (libcurl). No root: every socket lives in a temporary directory
-- made by the test and removed after it, also when it fails. Clients run
-- in other processes (curl(1), the reference client, and core.http.request
-- inside `zmesh run`), so they never block the server's loop.
local uv = require "luv"
local cjson = require "cjson"
local core = require "zmesh.core"

local http = core.http
local ZMESH = os.getenv("ZMESH_BIN") or "build/zmesh"
local TMP = os.getenv("TMPDIR") or "/tmp"

-- A script for `zmesh run`: core.http.request with the options in arg[1]
-- (JSON; body_file names a file holding the body), the result as JSON.
local CLIENT = [[
local core = require "zmesh.core"
local cjson = require "cjson"
local opts = cjson.decode(arg[1])
if opts.body_file then
  local f = assert(io.open(opts.body_file, "rb"))
  opts.body = f:read("a")
  f:close()
  opts.body_file = nil
end
local status, body, headers = core.http.request(opts)
if status then
  io.write(cjson.encode({ status = status, body = body, headers = headers }))
else
  io.write(cjson.encode({ err = body, ename = headers }))
end
]]

-- A script for `zmesh run`: a server on arg[1] that answers nobody (it
-- never runs its loop) and waits for stdin to close or a signal.
local SQUATTER = [[
local core = require "zmesh.core"
local srv = assert(core.http.listen { path = arg[1], handler = function() return 200, "squatter" end })
io.write("ready\n")
io.flush()
io.read("a")
srv:close()
]]

-- ---- files ---------------------------------------------------------

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function rm_rf(path)
  local st = uv.fs_lstat(path)
  if not st then return end
  if st.type == "directory" then
    local dir = assert(uv.fs_scandir(path))
    while true do
      local name = uv.fs_scandir_next(dir)
      if not name then break end
      rm_rf(path .. "/" .. name)
    end
    assert(uv.fs_rmdir(path))
  else
    assert(uv.fs_unlink(path))
  end
end

local function entries(path)
  local names = {}
  local dir = uv.fs_scandir(path)
  while dir do
    local name = uv.fs_scandir_next(dir)
    if not name then break end
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

-- ---- the loop ------------------------------------------------------

-- Run the loop until cond() holds or ms pass; returns cond().
local function wait(cond, ms)
  local expired = false
  local guard = uv.new_timer()
  guard:start(ms or 10000, 0, function() expired = true end)
  while not cond() and not expired do uv.run("once") end
  guard:close()
  return cond()
end

-- Drive srv as the daemon does: run() when its descriptor is readable
-- and when its timeout expires; re-arm the timer after every run().
local function serve(srv)
  local poll, timer = uv.new_poll(srv:fd()), uv.new_timer()
  local d = { errors = {}, runs = 0 }
  local function kick()
    local ok, err = pcall(function()
      assert(srv:run())
      d.runs = d.runs + 1
      timer:stop()
      local ms = srv:timeout()
      if ms then timer:start(ms, 0, kick) end
    end)
    if not ok then d.errors[#d.errors + 1] = err end
  end
  poll:start("r", kick)
  function d.stop()
    if not poll:is_closing() then
      poll:stop()
      poll:close()
      timer:stop()
      timer:close()
    end
  end
  return d
end

-- Start a process; the table returned fills in as it runs: pid, code,
-- signal, out, err, done.
local function spawn(cmd, args, with_stdin)
  local r = { chunks = {}, echunks = {} }
  local pending = 3
  local function step()
    pending = pending - 1
    if pending == 0 then
      r.out, r.err = table.concat(r.chunks), table.concat(r.echunks)
      r.done = true
    end
  end
  local stdin = with_stdin and uv.new_pipe() or nil
  local stdout, stderr = uv.new_pipe(), uv.new_pipe()
  local proc, pid = uv.spawn(cmd, { args = args, stdio = { stdin, stdout, stderr } },
    function(code, signal)
      r.code, r.signal = code, signal
      r.proc:close()
      step()
    end)
  assert(proc, pid)
  r.proc, r.pid, r.stdin = proc, pid, stdin
  for _, p in ipairs({ { stdout, r.chunks }, { stderr, r.echunks } }) do
    p[1]:read_start(function(_, data)
      if data then
        p[2][#p[2] + 1] = data
      else
        p[1]:close()
        step()
      end
    end)
  end
  return r
end

-- curl(1) on the unix socket: -i, so the reply comes back whole.
local function curl(sock, ...)
  return spawn("curl", { "-sS", "-i", "--noproxy", "*", "--unix-socket", sock, ... })
end

-- Parse curl -i output: the last (final) response's status, headers, body.
local function parse(out)
  local pos, status, headers = 1, nil, nil
  repeat
    local head_end = assert(out:find("\r\n\r\n", pos, true), "no header block in " .. out)
    local head = out:sub(pos, head_end - 1)
    pos = head_end + 4
    status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
    headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
      headers[name:lower()] = value
    end
  until status >= 200
  return { status = status, headers = headers, body = out:sub(pos) }
end

local function done(list)
  return function()
    for _, r in ipairs(list) do if not r.done then return false end end
    return true
  end
end

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected a raise matching " .. pattern)
  assert.matches(pattern, err, 1, true)
end

local function fails_with(ename, pattern, ...)
  local n = select("#", ...)
  local a, msg, name = ...
  assert.is_nil(a)
  assert.equal(3, n)
  assert.equal(ename, name)
  assert.matches("^" .. ename .. ": ", msg)
  if pattern then assert.matches(pattern, msg, 1, true) end
end

local function ok_handler() return 200, "ok" end

describe("core.http", function()
  local dir, sockdir, files, servers, client_script

  local function sock(name) return sockdir .. "/" .. (name or "zmesh.sock") end

  local function listen(opts)
    local srv, err, ename = http.listen(opts)
    if srv then servers[#servers + 1] = srv end
    return srv, err, ename
  end

  -- core.http.request in a separate zmesh process; the table returned
  -- gets .res (the decoded result) when it is done.
  local function zclient(opts)
    local r = spawn(ZMESH, { "run", client_script, cjson.encode(opts) })
    r.result = function()
      assert.equal(0, r.code, "zmesh client failed: " .. (r.err or "?"))
      return cjson.decode(r.out)
    end
    return r
  end

  before_each(function()
    dir = assert(uv.fs_mkdtemp(TMP .. "/zmesh-http-XXXXXX"))
    sockdir, files = dir .. "/s", dir .. "/f"
    assert(uv.fs_mkdir(sockdir, tonumber("700", 8)))
    assert(uv.fs_mkdir(files, tonumber("700", 8)))
    client_script = files .. "/client.lua"
    write_file(client_script, CLIENT)
    servers = {}
  end)

  after_each(function()
    for _, srv in ipairs(servers) do srv:close() end
    -- End whatever a failed test left running, then let luv close it all.
    uv.walk(function(h)
      if h:get_type() == "process" then pcall(h.kill, h, "sigkill") end
      if not h:is_closing() then h:close() end
    end)
    uv.run()
    local left = entries(sockdir)
    rm_rf(dir)
    assert.is_nil(uv.fs_lstat(dir), "temporary directory still there")
    assert.same({}, left, "sockets left behind")
  end)

  it("has listen and request, and writes no globals", function()
    assert.is_function(http.listen)
    assert.is_function(http.request)
    local before = {}
    for k in pairs(_G) do before[k] = true end
    local srv = assert(listen { path = sock(), handler = ok_handler })
    srv:close()
    for k in pairs(_G) do assert.is_true(before[k], "new global " .. k) end
  end)

  it("answers a GET with its path, query, headers and peer (curl and core.http.request)", function()
    local srv = assert(listen {
      path = sock(),
      handler = function(req)
        return 200, cjson.encode(req), { ["content-type"] = "application/json", ["X-Zmesh-Test"] = "yes", ["x-n"] = 7 }
      end,
    })
    assert.is_nil(srv:timeout())
    assert.equal("integer", math.type(srv:fd()))
    local d = serve(srv)
    local c = curl(sock(), "-H", "X-Custom: A", "-H", "X-Custom: B",
      "http://zmesh/v1/nrs/abc?dry_run=1&name=a%20b&flag")
    local z = zclient { socket = sock(), path = "/v1/status?x=%2F", headers = { ["X-Who"] = "cli", ["x-num"] = 3 } }
    assert.is_true(wait(done({ c, z })))
    d.stop()
    assert.same({}, d.errors)

    assert.equal(0, c.code, c.err)
    local res = parse(c.out)
    assert.equal(200, res.status)
    assert.equal("yes", res.headers["x-zmesh-test"])
    assert.equal("7", res.headers["x-n"])
    assert.equal("application/json", res.headers["content-type"])
    local req = cjson.decode(res.body)
    assert.equal("GET", req.method)
    assert.equal("/v1/nrs/abc", req.path)
    assert.same({ dry_run = "1", name = "a b", flag = "" }, req.query)
    assert.equal("A, B", req.headers["x-custom"])
    assert.equal("zmesh", req.headers.host)
    for name in pairs(req.headers) do assert.equal(name:lower(), name) end
    assert.equal("", req.body)
    local me = uv.os_get_passwd()
    assert.same({ pid = c.pid, uid = me.uid, gid = me.gid }, req.peer)

    local zr = z.result()
    assert.equal(200, zr.status)
    assert.equal("yes", zr.headers["x-zmesh-test"])
    assert.equal("application/json", zr.headers["content-type"])
    for name in pairs(zr.headers) do assert.equal(name:lower(), name) end
    local zreq = cjson.decode(zr.body)
    assert.equal("/v1/status", zreq.path)
    assert.same({ x = "/" }, zreq.query)
    assert.equal("cli", zreq.headers["x-who"])
    assert.equal("3", zreq.headers["x-num"])
    assert.matches("^zmesh/", zreq.headers["user-agent"])
    assert.equal(z.pid, zreq.peer.pid)
  end)

  it("takes a 1 MiB JSON body by PUT", function()
    local body = cjson.encode({ name = "big", data = string.rep("0123456789abcdef", 65536) })
    assert.is_true(#body > 1024 * 1024)
    write_file(files .. "/body.json", body)
    local seen = {}
    local srv = assert(listen {
      path = sock(),
      handler = function(req)
        if req.path == "/v1/raw" then
          return 200, tostring(req.headers["content-type"]) .. " " .. req.body
        end
        seen[#seen + 1] = { method = req.method, same = req.body == body, len = #req.body,
          ctype = req.headers["content-type"], clen = req.headers["content-length"] }
        return 201, cjson.encode({ len = #req.body }), { ["content-type"] = "application/json" }
      end,
    })
    local d = serve(srv)
    local c = curl(sock(), "-X", "PUT", "-H", "content-type: application/json",
      "--data-binary", "@" .. files .. "/body.json", "http://zmesh/v1/nrs/big")
    local z = zclient { socket = sock(), method = "PUT", path = "/v1/nrs/big", body_file = files .. "/body.json",
      headers = { ["content-type"] = "application/json" } }
    local raw = zclient { socket = sock(), method = "POST", path = "/v1/raw", body = "abc" }
    assert.is_true(wait(done({ c, z, raw })))
    d.stop()
    assert.same({}, d.errors)
    assert.equal("nil abc", raw.result().body)   -- no content-type made up
    assert.equal(0, c.code, c.err)
    assert.equal(201, parse(c.out).status)
    assert.same({ len = #body }, cjson.decode(parse(c.out).body))
    assert.equal(201, z.result().status)
    assert.equal(2, #seen)
    for _, s in ipairs(seen) do
      assert.same({ method = "PUT", same = true, len = #body, ctype = "application/json", clen = tostring(#body) }, s)
    end
  end)

  it("answers 413 over max_body without calling the handler", function()
    local calls = 0
    local srv = assert(listen {
      path = sock(), max_body = 1000,
      handler = function(req) calls = calls + 1; return 200, tostring(#req.body) end,
    })
    write_file(files .. "/1000", string.rep("a", 1000))
    write_file(files .. "/1001", string.rep("a", 1001))
    write_file(files .. "/big", string.rep("a", 3 * 1024 * 1024))
    local d = serve(srv)
    local fits = curl(sock(), "-X", "PUT", "--data-binary", "@" .. files .. "/1000", "http://zmesh/v1/x")
    local over = curl(sock(), "-X", "PUT", "--data-binary", "@" .. files .. "/1001", "http://zmesh/v1/x")
    local chunked = curl(sock(), "-X", "PUT", "-H", "Transfer-Encoding: chunked",
      "--data-binary", "@" .. files .. "/big", "http://zmesh/v1/x")
    local expect = curl(sock(), "-X", "PUT", "-H", "Expect: 100-continue",
      "--data-binary", "@" .. files .. "/big", "http://zmesh/v1/x")
    local z = zclient { socket = sock(), method = "POST", path = "/v1/x", body_file = files .. "/1001" }
    assert.is_true(wait(done({ fits, over, chunked, expect, z })))
    d.stop()
    assert.same({}, d.errors)
    local r = parse(fits.out)
    assert.equal(200, r.status)
    assert.equal("1000", r.body)
    for _, c in ipairs({ over, chunked, expect }) do
      assert.equal(0, c.code, c.err)
      r = parse(c.out)
      assert.equal(413, r.status)
      assert.equal("application/json", r.headers["content-type"])
      assert.same({ error = "request body over 1000 bytes", field = "body" }, cjson.decode(r.body))
    end
    assert.equal(413, z.result().status)
    assert.equal(1, calls)
  end)

  it("answers a suspended request later, from a timer", function()
    local pending, results = {}, {}
    local srv = assert(listen {
      path = sock(),
      handler = function(req)
        if req.path == "/now" then
          -- respond() inside the handler, then return nothing: answered.
          results.inside = req:respond(200, "now")
          return
        end
        if req.path == "/at-once" then
          results.answered = req
          return 200, "at once"
        end
        pending[#pending + 1] = req
        local t = uv.new_timer()
        t:start(150, 0, function()
          t:close()
          results[#results + 1] = req:respond(202, "later " .. req.query.n, { ["x-later"] = "1" })
          results.again = { pcall(req.respond, req, 200, "twice") }
        end)
      end,
    })
    local d = serve(srv)
    local started = uv.now()
    local c = curl(sock(), "http://zmesh/v1/wait?n=1")
    local z = zclient { socket = sock(), path = "/v1/wait?n=2" }
    local now = curl(sock(), "http://zmesh/now")
    local at_once = curl(sock(), "http://zmesh/at-once")
    assert.is_true(wait(done({ c, z, now, at_once })))
    d.stop()
    assert.same({}, d.errors)
    assert.equal("at once", parse(at_once.out).body)
    raises("request already answered", results.answered.respond, results.answered, 200)
    assert.is_true(uv.now() - started >= 150)
    assert.same({ true, true }, { results[1], results[2] })
    assert.is_true(results.inside)
    assert.is_false(results.again[1])
    assert.matches("request already answered", results.again[2], 1, true)
    local r = parse(c.out)
    assert.equal(202, r.status)
    assert.equal("later 1", r.body)
    assert.equal("1", r.headers["x-later"])
    local zr = z.result()
    assert.equal(202, zr.status)
    assert.equal("later 2", zr.body)
    assert.equal(200, parse(now.out).status)
    assert.equal("now", parse(now.out).body)
  end)

  it("serves 20 concurrent clients, all in flight at once", function()
    local waiting = {}
    local srv = assert(listen {
      path = sock(),
      handler = function(req)
        waiting[#waiting + 1] = req
        if #waiting == 20 then
          for _, r in ipairs(waiting) do assert(r:respond(200, "client " .. r.query.id)) end
        end
      end,
    })
    local d = serve(srv)
    local clients = {}
    for i = 1, 20 do
      if i % 2 == 0 then
        clients[i] = zclient { socket = sock(), path = "/v1/c?id=" .. i, timeout_ms = 20000 }
      else
        clients[i] = curl(sock(), "--max-time", "20", "http://zmesh/v1/c?id=" .. i)
      end
    end
    assert.is_true(wait(done(clients), 30000))
    d.stop()
    assert.same({}, d.errors)
    assert.equal(20, #waiting)
    for i, c in ipairs(clients) do
      local r = i % 2 == 0 and c.result() or parse(c.out)
      assert.equal(200, r.status)
      assert.equal("client " .. i, r.body)
    end
  end)

  it("turns a handler error or a bad reply into a 500 and reports it to on_error", function()
    local reported = {}
    local srv = assert(listen {
      path = sock(),
      on_error = function(msg)
        reported[#reported + 1] = msg
        if msg:find("/v1/table", 1, true) then error("on_error fails too") end
      end,
      handler = function(req)
        local p = req.path
        if p == "/v1/boom" then error("boom") end
        if p == "/v1/table" then error({}) end
        if p == "/v1/status42" then return 42 end
        if p == "/v1/body" then return 200, {} end
        if p == "/v1/header" then return 200, "x", { ["bad name"] = "v" } end
        if p == "/v1/length" then return 200, "x", { ["Content-Length"] = "1" } end
        return 200, "fine"
      end,
    })
    local d = serve(srv)
    local paths = { "/v1/boom", "/v1/table", "/v1/status42", "/v1/body", "/v1/header", "/v1/length" }
    local cs = {}
    for i, p in ipairs(paths) do cs[i] = curl(sock(), "http://zmesh" .. p) end
    assert.is_true(wait(done(cs)))
    local after = curl(sock(), "http://zmesh/v1/fine")
    assert.is_true(wait(done({ after })))
    d.stop()
    assert.same({}, d.errors)
    for _, c in ipairs(cs) do
      local r = parse(c.out)
      assert.equal(500, r.status)
      assert.equal("application/json", r.headers["content-type"])
      assert.is_string(cjson.decode(r.body).error)
    end
    assert.equal("fine", parse(after.out).body)
    assert.equal(#paths, #reported)
    local all = table.concat(reported, "\n")
    for _, want in ipairs({
      "GET /v1/boom: ", "boom", "stack traceback", "(error object is a table value)",
      "status must be an integer 200..599, got 42", "body must be a string, got table",
      "headers: 'bad name' is not a header name", "headers: 'Content-Length' is set by the server",
    }) do
      assert.matches(want, all, 1, true)
    end
  end)

  it("ignores handler errors without on_error", function()
    local srv = assert(listen { path = sock(), handler = function() error("quiet") end })
    local d = serve(srv)
    local c = curl(sock(), "http://zmesh/")
    assert.is_true(wait(done({ c })))
    d.stop()
    assert.same({}, d.errors)
    assert.equal(500, parse(c.out).status)
  end)

  it("makes its socket 0600 (or the mode asked) and refuses a second server on the path", function()
    local srv = assert(listen { path = sock(), handler = ok_handler })
    local st = assert(uv.fs_lstat(sock()))
    assert.equal("socket", st.type)
    assert.equal(tonumber("600", 8), st.mode & tonumber("7777", 8))
    assert.equal(sock(), srv:path())
    assert.matches("zmesh.http.server (" .. sock() .. ")", tostring(srv), 1, true)

    -- 0660 is not what a umask of 022 gives: the mode is set, not masked.
    local grp = assert(listen { path = sock("grp.sock"), mode = tonumber("660", 8), handler = ok_handler })
    assert.equal(tonumber("660", 8), assert(uv.fs_lstat(sock("grp.sock"))).mode & tonumber("7777", 8))
    grp:close()

    fails_with("EADDRINUSE", "another server answers on " .. sock(),
      http.listen { path = sock(), handler = ok_handler })
    -- The probe did not hurt the first server.
    local d = serve(srv)
    local c = curl(sock(), "http://zmesh/")
    assert.is_true(wait(done({ c })))
    d.stop()
    assert.equal("ok", parse(c.out).body)
  end)

  it("replaces a stale socket file that nobody answers, and refuses a file that is no socket", function()
    write_file(files .. "/squatter.lua", SQUATTER)
    local child = spawn(ZMESH, { "run", files .. "/squatter.lua", sock() }, true)
    assert.is_true(wait(function() return child.done or table.concat(child.chunks):find("ready") ~= nil end))
    assert.is_nil(child.done, child.err)
    -- Another process listens (without ever answering): refused.
    fails_with("EADDRINUSE", nil, http.listen { path = sock(), handler = ok_handler })
    child.proc:kill("sigkill")
    assert.is_true(wait(function() return child.done end))
    assert.equal(9, child.signal)
    assert.equal("socket", assert(uv.fs_lstat(sock())).type)   -- stale

    local srv = assert(listen { path = sock(), handler = function() return 200, "mine" end })
    local d = serve(srv)
    local c = curl(sock(), "http://zmesh/")
    assert.is_true(wait(done({ c })))
    d.stop()
    assert.equal("mine", parse(c.out).body)
    srv:close()

    write_file(sock("plain"), "data")
    fails_with("EEXIST", "is not a socket", http.listen { path = sock("plain"), handler = ok_handler })
    local f = assert(io.open(sock("plain")))
    assert.equal("data", f:read("a"))
    f:close()
    assert(uv.fs_unlink(sock("plain")))
    fails_with("ENOENT", "bind " .. sockdir .. "/nodir/x.sock",
      http.listen { path = sockdir .. "/nodir/x.sock", handler = ok_handler })
  end)

  it("close() unlinks its own socket only, is idempotent, and so are __close and __gc", function()
    local srv = assert(listen { path = sock(), handler = ok_handler })
    srv:close()
    assert.is_nil(uv.fs_lstat(sock()))
    srv:close()
    assert.matches("closed", tostring(srv), 1, true)
    assert.equal(sock(), srv:path())
    raises("server is closed", srv.run, srv)
    raises("server is closed", srv.fd, srv)
    assert.is_nil(srv:timeout())             -- nothing more to run

    do
      local s <close> = assert(http.listen { path = sock("scoped.sock"), handler = ok_handler })
      assert.is_not_nil(uv.fs_lstat(sock("scoped.sock")))
    end
    assert.is_nil(uv.fs_lstat(sock("scoped.sock")))

    assert(http.listen { path = sock("dropped.sock"), handler = ok_handler })
    collectgarbage()
    collectgarbage()
    assert.is_nil(uv.fs_lstat(sock("dropped.sock")))

    -- A server whose path now belongs to another leaves it alone.
    local old = assert(listen { path = sock(), handler = ok_handler })
    assert(uv.fs_unlink(sock()))
    local new = assert(listen { path = sock(), handler = ok_handler })
    old:close()
    assert.equal("socket", assert(uv.fs_lstat(sock())).type)
    new:close()
    assert.is_nil(uv.fs_lstat(sock()))
  end)

  it("answers 503 to waiting requests when it closes; respond then returns false", function()
    local waiting = {}
    local srv = assert(listen { path = sock(), handler = function(req) waiting[#waiting + 1] = req end })
    local d = serve(srv)
    local c = curl(sock(), "http://zmesh/v1/wait")
    local z = zclient { socket = sock(), path = "/v1/wait" }
    assert.is_true(wait(function() return #waiting == 2 end))
    d.stop()
    srv:close()
    assert.is_nil(uv.fs_lstat(sock()))
    assert.is_true(wait(done({ c, z })))
    assert.equal(503, parse(c.out).status)
    assert.equal(503, z.result().status)
    assert.is_false(waiting[1]:respond(200, "too late"))
    assert.is_false(waiting[2]:respond(200, "too late"))
  end)

  it("respond returns false when the client went away, and the server goes on", function()
    local waiting = {}
    local srv = assert(listen {
      path = sock(),
      handler = function(req)
        if req.path == "/v1/wait" then waiting[#waiting + 1] = req; return end
        return 200, "still here"
      end,
    })
    local d = serve(srv)
    local c = curl(sock(), "--max-time", "0.3", "http://zmesh/v1/wait")
    assert.is_true(wait(done({ c })))
    assert.equal(28, c.code)                 -- curl's timeout
    assert.equal(1, #waiting)
    assert.is_false(waiting[1]:respond(200, "nobody listens"))
    assert.is_false(waiting[1]:respond(200, "nobody listens"))
    local again = curl(sock(), "http://zmesh/v1/other")
    assert.is_true(wait(done({ again })))
    d.stop()
    assert.same({}, d.errors)
    assert.equal("still here", parse(again.out).body)
  end)

  it("defers close() called by a handler until run() returns; run() inside a handler raises", function()
    local d
    local inner
    local srv
    srv = assert(listen {
      path = sock(),
      handler = function()
        inner = { pcall(srv.run, srv) }
        d.stop()                         -- never close a descriptor luv polls
        srv:close()
        return 200, "bye"
      end,
    })
    d = serve(srv)
    local c = curl(sock(), "http://zmesh/")
    assert.is_true(wait(done({ c })))
    assert.same({}, d.errors)
    assert.equal("bye", parse(c.out).body)
    assert.is_false(inner[1])
    assert.matches("srv:run() called from inside a handler", inner[2], 1, true)
    assert.is_nil(uv.fs_lstat(sock()))
    assert.matches("closed", tostring(srv), 1, true)
  end)

  it("request: transport failures are errno triples", function()
    fails_with("ENOENT", "connect " .. sock("missing.sock"),
      http.request { socket = sock("missing.sock"), path = "/v1/status" })

    -- Bound, not listening: a dead socket.
    local dead = uv.new_pipe()
    assert(dead:bind(sock("dead.sock")))
    fails_with("ECONNREFUSED", "connect " .. sock("dead.sock"),
      http.request { socket = sock("dead.sock"), path = "/v1/status" })
    dead:close()
    uv.run()
    os.remove(sock("dead.sock"))

    -- Listening but never run: the connection waits in the backlog.
    local srv = assert(listen { path = sock(), handler = ok_handler })
    local t0 = uv.hrtime()
    fails_with("ETIMEDOUT", "GET /v1/status on " .. sock() .. ": no reply within 200 ms",
      http.request { socket = sock(), path = "/v1/status", timeout_ms = 200 })
    local ms = (uv.hrtime() - t0) / 1e6
    assert.is_true(ms >= 190 and ms < 5000, "took " .. ms .. " ms")
    srv:close()
  end)

  it("raises on argument errors, naming the field", function()
    raises("table expected", http.listen, nil)
    raises("field 'path': required string missing", http.listen, { handler = ok_handler })
    raises("field 'path': empty", http.listen, { path = "", handler = ok_handler })
    raises("field 'path': longer than 107 bytes", http.listen, { path = "/" .. string.rep("x", 107), handler = ok_handler })
    raises("field 'path': contains a NUL byte", http.listen, { path = "/tmp/a\0b", handler = ok_handler })
    raises("field 'handler': function expected, got nil", http.listen, { path = sock() })
    raises("field 'on_error': function expected, got number", http.listen,
      { path = sock(), handler = ok_handler, on_error = 1 })
    raises("field 'mode': 4096 out of range 0..511", http.listen, { path = sock(), handler = ok_handler, mode = 4096 })
    raises("field 'max_body': -1 out of range", http.listen, { path = sock(), handler = ok_handler, max_body = -1 })
    raises("field 'max_body': integer expected", http.listen, { path = sock(), handler = ok_handler, max_body = "1" })
    raises("unknown field 'colour'", http.listen, { path = sock(), handler = ok_handler, colour = 1 })
    assert.is_nil(uv.fs_lstat(sock()))       -- nothing made on a raise

    local rq = http.request
    raises("field 'socket': required string missing", rq, { path = "/" })
    raises("field 'socket': a path of 1..107 bytes expected", rq, { socket = "", path = "/" })
    raises("field 'path': required string missing", rq, { socket = sock() })
    raises("field 'path': 'v1' is not a path", rq, { socket = sock(), path = "v1" })
    raises("field 'path': '/a b' is not a path", rq, { socket = sock(), path = "/a b" })
    raises("field 'method': 'G T' is not an HTTP method", rq, { socket = sock(), path = "/", method = "G T" })
    raises("field 'timeout_ms': 0 out of range", rq, { socket = sock(), path = "/", timeout_ms = 0 })
    raises("field 'body': string expected, got number", rq, { socket = sock(), path = "/", body = 5 })
    raises("headers: 'a b' is not a header name", rq, { socket = sock(), path = "/", headers = { ["a b"] = "x" } })
    raises("headers: value of 'x' contains CR, LF or NUL", rq,
      { socket = sock(), path = "/", headers = { x = "a\r\nb" } })
    raises("headers: value of 'x' must be a string or an integer, got table", rq,
      { socket = sock(), path = "/", headers = { x = {} } })
    raises("unknown field 'url'", rq, { socket = sock(), path = "/", url = "http://x/" })

    -- req:respond checks its arguments, on a live request.
    local checks
    local srv = assert(listen {
      path = sock(),
      handler = function(req)
        checks = {
          { pcall(req.respond, req, 99) },
          { pcall(req.respond, req, 200.5) },
          { pcall(req.respond, req, 200, 5) },
          { pcall(req.respond, req, 200, "x", { ["content-length"] = "1" }) },
          { pcall(req.respond, req, 200, "x", { x = "" }) },
          { pcall(req.respond, {}, 200) },
          { pcall(req.respond, "req", 200) },
        }
        return 200, "checked"
      end,
    })
    local d = serve(srv)
    local c = curl(sock(), "http://zmesh/")
    assert.is_true(wait(done({ c })))
    d.stop()
    assert.equal("checked", parse(c.out).body)
    local want = {
      "status must be an integer 200..599, got 99",
      "status must be an integer 200..599, got 200.5",
      "body must be a string, got number",
      "headers: 'content-length' is set by the server",
      "headers: value of 'x' is empty",
      "request expected",
      "request expected",
    }
    for i, w in ipairs(want) do
      assert.is_false(checks[i][1])
      assert.matches(w, checks[i][2], 1, true)
    end
  end)
end)
