-- (10)/(11) notification workload: PATCH /ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:<random 0..N_VEHICLES-1>/attrs/speed
-- body {"value": <n>} where n is never sent twice (RUN_SEQ, the wrk thread and a counter), so every
-- update changes the attribute and fires every subscription watching it. Expected 204.
-- Environment: N_VEHICLES (100), RUN_SEQ (set by xtask, one number per wrk run).
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local counter, base, N, prefix = 0, 0, 100, "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:"
function init(args)
  C.seed_random()
  N = C.env_int("N_VEHICLES", 100)
  base = C.env_int("RUN_SEQ", 0) * 1000000000 + (tid or 0) * 100000000
end
function request()
  counter = counter + 1
  return wrk.format("PATCH", prefix .. math.random(0, N - 1) .. "/attrs/speed",
                    C.json_headers, string.format('{"value":%d}', base + counter))
end
done = C.done
