-- (5)-(9) queries: GET QUERY_PATH (set by xtask), e.g.
-- /ngsi-ld/v1/entities?type=Vehicle&limit=20. Expected 200.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local req
function init(args)
  req = wrk.format("GET", os.getenv("QUERY_PATH"), C.accept_headers)
end
function request() return req end
done = C.done
