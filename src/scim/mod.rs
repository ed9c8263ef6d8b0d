//! The schema-driven SCIM core: schemas, normalisation, PATCH, filters,
//! projection, rendering, and the resource operations built on them.

pub mod bulk;
pub mod cursor;
pub mod filter;
pub mod index;
pub mod limits;
pub mod list;
pub mod membership;
pub mod normalize;
pub mod patch;
pub mod path;
pub mod plan;
pub mod project;
#[cfg(test)]
mod properties;
pub mod render;
pub mod schema;
mod search;
pub mod service;
