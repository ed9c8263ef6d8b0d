//! scim-gateway: a SCIM 2.0 provisioning gateway.
//!
//! Data moves through the modules in this order: [`http`] (auth, limits,
//! SCIM errors) → [`scim`] (schema-driven validation, PATCH, filters) →
//! [`store`] (one transaction writes the change, its audit row and a sync job
//! per app) → [`lifecycle`] (which apps, which account) → [`delivery`]
//! (claim, converge, retry) → [`adapters`] (scim, webhook). [`audit`] stands
//! beside them; [`admin`] is the one admin service that the admin API and
//! the CLI ([`commands`]) call; [`metrics`], [`telemetry`] and [`tls`] serve operations.

pub mod adapters;
pub mod admin;
pub mod audit;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod format;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod scim;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
