//! x
pub mod tls;
