//! scim-gateway: a SCIM 2.0 provisioning gateway.
//!
//! Data moves through the modules in this order: [`http`] (auth, limits,
//! SCIM errors) → [`scim`] (schema-driven validation, PATCH, filters) →
//! [`store`] (one transaction per write, with its audit row) → delivery to
//! downstream apps. [`audit`] stands beside them.

pub mod audit;
pub mod config;
pub mod error;
pub mod http;
pub mod scim;
pub mod startup;
pub mod store;
pub mod telemetry;
