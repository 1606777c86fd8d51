//! Black-box HTTP tests against an in-process broker on port 0 (one test binary).

mod admin;
mod attrs;
mod batch;
mod contexts;
mod csource_subscriptions;
mod discovery;
mod entities;
mod entity_maps;
mod errors;
mod forwarding;
mod helpers;
mod persistence;
mod query;
mod registrations;
mod subscriptions;
mod temporal;
mod tenants;
