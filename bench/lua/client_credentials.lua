-- POST /token, grant_type=client_credentials, client_secret_basic.
-- BENCH_AUTH: the whole Authorization header value ("Basic ...").
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bad = 0
setup = common.setup
done = common.done

wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")

function response(status, headers, body)
  if status == 200 and not body:find('"access_token":"', 1, true) then
    bad = bad + 1
  end
end
