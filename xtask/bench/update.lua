-- (3) update one attribute: PATCH /ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:<random 0..N_SMALL-1>/attrs/speed
-- body {"value": <int>} (1024 precomputed requests, random order). Expected 204; durable on return.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local reqs, n = {}, 1024
function init(args)
  C.seed_random()
  local N = C.env_int("N_SMALL", 1000)
  for k = 1, n do
    local id = math.random(0, N - 1)
    reqs[k] = wrk.format("PATCH", "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:" .. id .. "/attrs/speed",
                         C.json_headers, string.format('{"value":%d}', math.random(0, 120)))
  end
end
function request() return reqs[math.random(n)] end
done = C.done
