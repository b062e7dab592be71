-- A plain GET of the URL given to wrk (discovery, JWKS, the hello ceiling).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bad = 0
setup = common.setup
done = common.done
