-- (2) retrieve: GET /ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:<uniform random 0..N_SMALL-1>
-- (pre-created by xtask). Expected 200.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local reqs, n = {}, 0
function init(args)
  C.seed_random()
  n = C.env_int("N_SMALL", 1000)
  for i = 0, n - 1 do
    reqs[i + 1] = wrk.format("GET", "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:" .. i, C.accept_headers)
  end
end
function request() return reqs[math.random(n)] end
done = C.done
