-- (1) create: POST /ngsi-ld/v1/entities, one five-attribute entity, unique id per request:
-- urn:ngsi-ld:Vehicle:c-<RUN_TAG>-<thread>-<counter>. Expected 201.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local counter, prefix = 0, ""
function init(args)
  C.seed_random()
  prefix = string.format("urn:ngsi-ld:Vehicle:c-%s-%d-", os.getenv("RUN_TAG") or tostring(os.time()), tid or 0)
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/ngsi-ld/v1/entities", C.json_headers, C.entity(prefix .. counter, counter))
end
done = C.done
