-- The state a failover probe carries (zmesh.daemon.failover's encode and
-- decode): what one daemon says is what the other reads.
require("fake_keys").install()
local failover = require "zmesh.daemon.failover"

describe("failover probe payload", function()
  it("carries id, aggregator, Internet, exit, ask and served list both ways", function()
    local text = failover.encode { id = "n2", up = "n1", inet = false, ex = "n3", q = true, srv = { "n4", "n5" } }
    assert.equal("zm1 id=n2 up=n1 inet=0 ex=n3 q=1 srv=n4,n5", text)
    local st = failover.decode(text)
    assert.same({ id = "n2", up = "n1", inet = false, ex = "n3", q = true, srv = { "n4", "n5" }, more = false }, st)
  end)

  it("leaves out what is not said, and splits a served list too long for one probe", function()
    assert.same({ id = "n1", q = false }, failover.decode(failover.encode { id = "n1" }))
    local many = {}
    for i = 1, 40 do many[i] = string.format("node%02d", i) end
    local text = failover.encode { id = "agg", ex = "exit1", srv = many }
    assert.is_true(#text <= 250)
    local st = failover.decode(text)
    assert.is_true(st.more)
    assert.equal("exit1", st.ex)
    assert.is_true(#st.srv > 0 and #st.srv < 40)
  end)

  it("reads nothing from a payload that is not a probe's", function()
    assert.is_nil(failover.decode("hello"))
    assert.is_nil(failover.decode("zm1 up=n1"))
    assert.is_nil(failover.decode(nil))
  end)
end)
