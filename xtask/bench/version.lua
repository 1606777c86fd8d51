-- (0) HTTP ceiling: GET /version. Goes through request() like every other workload, so the
-- client-side Lua cost is the same and the ratio compares the broker's work only.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local req
function init(args) req = wrk.format("GET", "/version", C.accept_headers) end
function request() return req end
done = C.done
