//! The `xmppfed` command line's logic: reading manifests, and standalone mode (`up`).

pub mod manifests;
pub mod standalone;
