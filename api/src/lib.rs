//! The xmppfed API: `xmppfed.io/v1alpha1` custom resources, their admission validation, the
//! cross-object checks the operator reports as conditions, and the compiler that turns them into
//! the policy document the proxy and gateway enforce.

pub mod v1alpha1;

/// API group of every xmppfed kind.
pub const GROUP: &str = "xmppfed.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every xmppfed object.
pub const API_VERSION: &str = "xmppfed.io/v1alpha1";

pub mod admission;
pub mod compile;
pub mod configmap;
pub mod crdgen;
pub mod crosscheck;
pub mod findings;
pub mod schema_check;
pub mod validate;
