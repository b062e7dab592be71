-- POST /introspect of a random token from BENCH_TOKENS (one per line), as the gateway
-- client (BENCH_AUTH). BENCH_ACCEPT, when set, is sent as Accept (RFC 9701 JWT answers).
-- A JSON answer that is not "active":true counts as bad.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bad = 0
setup = common.setup
done = common.done

local tokens = common.lines(os.getenv("BENCH_TOKENS"))
local accept = os.getenv("BENCH_ACCEPT")
local json = accept == nil or accept == ""
math.randomseed(os.time())

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
if not json then
  wrk.headers["Accept"] = accept
end

function request()
  local token = tokens[math.random(#tokens)]
  return wrk.format(nil, nil, nil, "token=" .. token)
end

function response(status, headers, body)
  if status ~= 200 then
    return
  end
  if json then
    if not body:find('"active":true', 1, true) then
      bad = bad + 1
    end
  elseif #body < 20 then
    bad = bad + 1
  end
end
