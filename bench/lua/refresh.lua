-- POST /token, grant_type=refresh_token, with rotation: every answer spends the token sent
-- and carries a new one. wrk gives one Lua state per thread (the benchmark runs one thread),
-- not per connection, so the tokens live on a stack: a request takes the newest unspent
-- token (one from an answer, or else one from the pool in BENCH_TOKENS), and each answer
-- pushes the token it carries. Every token is sent exactly once, so reuse detection never
-- fires; a failed answer loses its chain and the next request starts from the pool.
-- BENCH_AUTH: the code-flow client's Authorization header value.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bad = 0
setup = common.setup
done = common.done

local pool = common.lines(os.getenv("BENCH_TOKENS"))
local fresh = {}

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

function request()
  local token = table.remove(fresh)
  if token == nil then
    token = table.remove(pool) or "tsr_pool_exhausted"
  end
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  if status ~= 200 then
    return
  end
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then
    table.insert(fresh, token)
  else
    bad = bad + 1
  end
end
