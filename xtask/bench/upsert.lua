-- (4) batch upsert: POST /ngsi-ld/v1/entityOperations/upsert?options=update, UPSERT_BATCH (20)
-- consecutive entities urn:ngsi-ld:Vehicle:u-<i> from a pool of UPSERT_POOL (2000, pre-created by
-- xtask) at a random offset; 128 precomputed bodies (~11 KB). Expected 204 (all exist).
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local reqs, n = {}, 128
function init(args)
  C.seed_random()
  local pool = C.env_int("UPSERT_POOL", 2000)
  local per  = C.env_int("UPSERT_BATCH", 20)
  for k = 1, n do
    local start = math.random(0, pool - 1)
    local parts = {}
    for j = 0, per - 1 do
      local i = (start + j) % pool
      parts[#parts + 1] = C.entity("urn:ngsi-ld:Vehicle:u-" .. i, i)
    end
    reqs[k] = wrk.format("POST", "/ngsi-ld/v1/entityOperations/upsert?options=update", C.json_headers,
                         "[" .. table.concat(parts, ",") .. "]")
  end
end
function request() return reqs[math.random(n)] end
done = C.done
