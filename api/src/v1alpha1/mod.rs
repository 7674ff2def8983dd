//! `xmppfed.io/v1alpha1`.

mod access_policy;
mod common;
mod federation;
mod partner;

pub use access_policy::*;
pub use common::*;
pub use federation::*;
pub use partner::*;
