//! `xmppfed.io/v1alpha1`.

// clippy's duplicated_attributes lint mistakes the repeated `type_ = …` inside separate
// `printcolumn(…)` entries of `#[kube(…)]` for duplicates.
#[allow(clippy::duplicated_attributes)]
mod access_policy;
mod common;
#[allow(clippy::duplicated_attributes)]
mod federation;
#[allow(clippy::duplicated_attributes)]
mod partner;

pub use access_policy::*;
pub use common::*;
pub use federation::*;
pub use partner::*;
