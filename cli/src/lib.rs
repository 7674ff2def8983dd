//! The `xmppfed` command line's logic: reading manifests, standalone mode (`up`) and
//! federation diagnostics (`probe`).

pub mod manifests;
pub mod probe;
pub mod standalone;
