//! The compiled xmppfed policy document.
//!
//! The operator (or `xmppfed up`) compiles an `XmppFederation` with its `XmppAllowedPartner`s
//! and `ExternalAccessPolicy`s into one [`PolicyDocument`]. The proxy and the gateway load it,
//! check it ([`codec::decode`]) and swap it in atomically; on the stanza path they only use
//! [`CompiledPolicy`], whose lookups are O(1) hash probes.
//!
//! This crate has no Kubernetes dependency: the network services link it without kube, and the
//! document is the contract between the control plane and the data plane.

pub mod codec;
pub mod document;
pub mod domain;
pub mod index;
pub mod negotiation;
pub mod wildcard;

pub use codec::{ConfigMapPayload, DecodeError, EncodeError, decode, decode_bytes, encode};
pub use document::*;
pub use domain::{DomainError, normalize_domain};
pub use index::{AccessDecision, AccessSource, CompiledPolicy};
pub use negotiation::{AuthMethod, Negotiation, NegotiationSettings, PartnerType, Severity};
