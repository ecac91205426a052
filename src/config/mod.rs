//! The configuration: one TOML file, validated with file:line:column errors.
//!
//! The lab's host table stays a one-liner per entry (`"host" = ["ip", "ip:port"]`); a
//! table form (`[hosts."name"]`) carries per-entry options. [`types`] holds the
//! validated types every stage reads; `raw` is the serde layer, `validate` turns it
//! into those types one section at a time (`hosts` the host table, `bounds` the checks
//! all sections share), [`values`] parses the value syntaxes.

mod bounds;
mod error;
mod hosts;
mod load;
mod raw;
pub mod tls;
pub mod types;
mod validate;
pub mod values;

pub use error::ConfigError;
pub use types::*;

#[cfg(test)]
mod tests;
