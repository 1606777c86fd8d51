//! Black-box HTTP tests against an in-process broker on port 0 (one test binary).

mod helpers;
