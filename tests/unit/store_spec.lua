-- Durable desired state: versioned files, written whole, and a bad file
-- set aside and reported, never in the way.
local fake_core = require "fake_core"

local tmpdir = require "tmpdir"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("node store", function()
  local dir, store

  before_each(function()
    dir = tmpdir()
    local req = fake_core.loader(fake_core.new())
    store = req("zmesh.node.store")
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("writes a versioned file, mode 0600, and reads it back", function()
    store.write(dir .. "/nrs/abc.json", "nr", { net_id = "abc", subnet = "10.1.1.0/24" })
    local f = io.popen("stat -c %a '" .. dir .. "/nrs/abc.json'")
    assert.equal("600", f:read("l"))
    f:close()
    local problems = {}
    local all = store.read_all(dir .. "/nrs", "nr", problems)
    assert.same({ abc = { net_id = "abc", subnet = "10.1.1.0/24" } }, all)
    assert.same({}, problems)
    local text = io.open(dir .. "/nrs/abc.json"):read("a")
    assert.matches('"format": 1', text, 1, true)
    assert.matches('"kind": "nr"', text, 1, true)
  end)

  it("reads a file again once it was replaced, and never hands out its cache", function()
    store.write(dir .. "/nrs/abc.json", "nr", { net_id = "abc", peers = { { node_id = "n2" } } })
    local first = store.read_all(dir .. "/nrs", "nr", {})
    -- What a caller does to its copy stays its own.
    first.abc.peers[1].node_id = "changed"
    first.abc.extra = true
    assert.same({ net_id = "abc", peers = { { node_id = "n2" } } }, store.read_all(dir .. "/nrs", "nr", {}).abc)
    -- A new version (written, as every write is, by a rename) is read.
    store.write(dir .. "/nrs/abc.json", "nr", { net_id = "abc", peers = { { node_id = "n3" } } })
    assert.equal("n3", store.read_all(dir .. "/nrs", "nr", {}).abc.peers[1].node_id)
    -- So is one rewritten in place by someone else, same size or not.
    write(dir .. "/nrs/abc.json", '{"format": 1, "kind": "nr", "data": {"net_id": "abc", "peers": []}}')
    assert.same({}, store.read_all(dir .. "/nrs", "nr", {}).abc.peers)
    -- And a file gone is gone.
    os.remove(dir .. "/nrs/abc.json")
    assert.same({}, store.read_all(dir .. "/nrs", "nr", {}))
  end)

  it("sets aside a truncated, a foreign and a future file, and reports each", function()
    store.write(dir .. "/nrs/good.json", "nr", { net_id = "good" })
    write(dir .. "/nrs/cut.json", '{"format": 1, "kind": "nr", "data": {"net_')
    write(dir .. "/nrs/other.json", '{"format": 1, "kind": "containers", "data": {}}')
    write(dir .. "/nrs/next.json", '{"format": 2, "kind": "nr", "data": {}}')
    write(dir .. "/nrs/list.json", '[1, 2]')
    local problems = {}
    local all = store.read_all(dir .. "/nrs", "nr", problems)
    assert.same({ good = { net_id = "good" } }, all)
    assert.equal(4, #problems)
    table.sort(problems)
    assert.matches("cut%.json: invalid JSON.*set aside as .*cut%.json%.corrupt", problems[1])
    assert.matches("list%.json: not a JSON object", problems[2])
    assert.matches("next%.json: format 2, this zmesh reads format 1", problems[3])
    assert.matches("other%.json: kind containers, expected nr", problems[4])
    -- Set aside, not deleted: an operator can look at them.
    assert.truthy(io.open(dir .. "/nrs/cut.json.corrupt"))
    assert.is_nil(io.open(dir .. "/nrs/cut.json"))
    -- The next read is clean.
    problems = {}
    store.read_all(dir .. "/nrs", "nr", problems)
    assert.same({}, problems)
  end)

  it("reads one file: nil when absent, a bad one set aside", function()
    local problems = {}
    assert.is_nil(store.read(dir .. "/containers/x.json", "containers", problems))
    os.execute("mkdir -p '" .. dir .. "/containers'")
    write(dir .. "/containers/x.json", "")
    assert.is_nil(store.read(dir .. "/containers/x.json", "containers", problems))
    assert.equal(1, #problems)
    store.remove(dir .. "/containers/x.json")
  end)
end)
