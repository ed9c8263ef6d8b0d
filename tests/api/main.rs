//! The one integration-test binary: the gateway as a client sees it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adapters;
mod audit;
mod bulk;
mod claims;
mod cli;
mod compat;
mod delivery;
mod delivery_faults;
mod discovery;
mod errors;
mod filters;
mod helpers;
mod isolation;
mod jwt;
mod lifecycle;
mod limits;
mod metrics;
mod multi_process;
mod patch;
mod process;
mod properties;
mod query;
mod rate_limit;
mod read_cache;
mod reconcile;
mod regressions;
mod resources;
mod seal;
mod search;
mod secrets;
mod shutdown;
mod smoke;
mod tls;
mod writes;
