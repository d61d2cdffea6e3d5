-- zmesh.json: sorted keys, marked arrays and objects, errors.
local json = require "zmesh.json"

describe("zmesh.json", function()
  it("sorts object keys, so equal tables encode to equal bytes", function()
    assert.equal('{"a":1,"b":[1,2],"c":{"x":true,"y":"z"}}',
      json.encode({ c = { y = "z", x = true }, b = { 1, 2 }, a = 1 }))
  end)

  it("keeps marked empty arrays and objects apart", function()
    assert.equal('{"a":[],"o":{}}', json.encode({ a = json.array(), o = json.object() }))
  end)

  it("pretty-prints with two spaces", function()
    assert.equal('{\n  "a": [\n    1\n  ]\n}', json.encode({ a = { 1 } }, { pretty = true }))
  end)

  it("round-trips strings that need escaping", function()
    local s = 'quote " backslash \\ slash / newline \n tab \t'
    assert.equal(s, json.decode(json.encode({ s = s })).s)
  end)

  it("reports bad input and bad keys", function()
    local v, err = json.decode("{nope")
    assert.is_nil(v)
    assert.matches("^invalid JSON: ", err)
    assert.has_error(function() json.encode({ [1] = 1, x = 2 }) end, "json: object key must be a string, got number")
    assert.has_error(function() json.encode({ f = print }) end, "json: cannot encode a function")
  end)

  it("encodes null and reads files", function()
    assert.equal('{"x":null}', json.encode({ x = json.null }))
    local path = os.tmpname()
    local f = io.open(path, "w") f:write('{"k": [1, "two"]}') f:close()
    assert.same({ k = { 1, "two" } }, json.read_file(path))
    os.remove(path)
    local v, err = json.read_file(path)
    assert.is_nil(v)
    assert.is_string(err)
  end)
end)
