//! Encoding the policy document for a ConfigMap (or a file), and decoding it defensively.
//!
//! Small documents are plain JSON under `data["policy.json"]`, readable with `kubectl get -o
//! yaml`. Larger ones are gzip-compressed under `binaryData["policy.json.gz"]` so that 10,000
//! partners still fit one ConfigMap. Decoding refuses anything it cannot fully trust: an
//! unknown format, a content hash that does not match, a document that breaks the invariants
//! the proxy relies on. The caller keeps its last good policy in that case.

use crate::document::{FORMAT, PolicyDocument};
use crate::index::CompiledPolicy;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use thiserror::Error;

/// ConfigMap key of an uncompressed document.
pub const KEY_JSON: &str = "policy.json";
/// ConfigMap `binaryData` key of a gzip-compressed document.
pub const KEY_GZIP: &str = "policy.json.gz";
/// Annotation carrying the document version on the ConfigMap.
pub const VERSION_ANNOTATION: &str = "xmppfed.io/policy-version";
/// Documents whose JSON is larger than this are compressed.
pub const COMPRESS_ABOVE: usize = 256 * 1024;
/// What one ConfigMap may hold (etcd's 1 MiB request limit, less room for metadata).
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024 - 32 * 1024;
/// Largest document accepted after decompression: a guard against compression bombs.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// The `data`, `binaryData` and annotations of the policy ConfigMap, without a Kubernetes
/// dependency (`xmppfed-api` converts it to and from a `ConfigMap`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigMapPayload {
    pub data: BTreeMap<String, String>,
    pub binary_data: BTreeMap<String, Vec<u8>>,
    pub annotations: BTreeMap<String, String>,
}

impl ConfigMapPayload {
    /// Bytes counted against the ConfigMap size limit.
    pub fn size(&self) -> usize {
        self.data
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + self
                .binary_data
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error(
        "the policy document needs {size} bytes even compressed, more than one ConfigMap holds ({MAX_CONFIGMAP_BYTES})"
    )]
    TooLarge { size: usize },
    #[error("could not serialise the policy document: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("could not compress the policy document: {0}")]
    Compress(#[from] std::io::Error),
}

/// Why a policy document was refused.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("the policy ConfigMap has neither data[\"{KEY_JSON}\"] nor binaryData[\"{KEY_GZIP}\"]")]
    Missing,
    #[error(
        "the policy ConfigMap has both data[\"{KEY_JSON}\"] and binaryData[\"{KEY_GZIP}\"]; refusing to guess which is current"
    )]
    Ambiguous,
    #[error("the compressed policy document is not valid gzip: {0}")]
    Decompress(std::io::Error),
    #[error("the policy document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the policy document is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error(
        "the policy document has format {found:?}, but this build understands only {FORMAT:?} (is the operator newer or older than this component?)"
    )]
    Incompatible { found: String },
    #[error(
        "the policy document does not match its version: it claims {declared}, its content hashes to {computed} (corrupted or edited by hand)"
    )]
    HashMismatch { declared: String, computed: String },
    #[error(
        "the ConfigMap annotation {VERSION_ANNOTATION} says {annotation}, the document inside is {document}"
    )]
    AnnotationMismatch {
        annotation: String,
        document: String,
    },
    #[error("the policy document is inconsistent: {0}")]
    Invalid(String),
}

/// The canonical bytes of `doc`: its JSON with `version` left empty.
pub fn canonical_bytes(doc: &PolicyDocument) -> Result<Vec<u8>, serde_json::Error> {
    if doc.version.is_empty() {
        return serde_json::to_vec(doc);
    }
    let mut unversioned = doc.clone();
    unversioned.version.clear();
    serde_json::to_vec(&unversioned)
}

/// `sha256:<hex>` of the canonical bytes.
pub fn content_hash(doc: &PolicyDocument) -> Result<String, serde_json::Error> {
    Ok(hash_bytes(&canonical_bytes(doc)?))
}

fn hash_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Set `doc.version` to its content hash.
pub fn seal(mut doc: PolicyDocument) -> Result<PolicyDocument, serde_json::Error> {
    doc.version.clear();
    let bytes = serde_json::to_vec(&doc)?;
    doc.version = hash_bytes(&bytes);
    Ok(doc)
}

/// Encode a document into ConfigMap form, sealing it first if it is not sealed.
pub fn encode(doc: &PolicyDocument) -> Result<ConfigMapPayload, EncodeError> {
    // Clone only when the document still has to be sealed.
    let sealed_copy;
    let sealed = if doc.version.is_empty() {
        sealed_copy = seal(doc.clone())?;
        &sealed_copy
    } else {
        doc
    };
    let json = serde_json::to_vec(sealed)?;
    let mut payload = ConfigMapPayload::default();
    payload
        .annotations
        .insert(VERSION_ANNOTATION.to_string(), sealed.version.clone());
    if json.len() <= COMPRESS_ABOVE {
        // serde_json output is always UTF-8.
        let text =
            String::from_utf8(json).map_err(|e| EncodeError::Compress(std::io::Error::other(e)))?;
        payload.data.insert(KEY_JSON.to_string(), text);
    } else {
        let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 8), Compression::default());
        gz.write_all(&json)?;
        payload
            .binary_data
            .insert(KEY_GZIP.to_string(), gz.finish()?);
    }
    let size = payload.size();
    if size > MAX_CONFIGMAP_BYTES {
        return Err(EncodeError::TooLarge { size });
    }
    Ok(payload)
}

/// Decode and check the policy ConfigMap's content.
pub fn decode(payload: &ConfigMapPayload) -> Result<CompiledPolicy, DecodeError> {
    let compiled = match (
        payload.data.get(KEY_JSON),
        payload.binary_data.get(KEY_GZIP),
    ) {
        (None, None) => return Err(DecodeError::Missing),
        (Some(_), Some(_)) => return Err(DecodeError::Ambiguous),
        (Some(json), None) => decode_json(json.as_bytes())?,
        (None, Some(gz)) => decode_json(&gunzip(gz)?)?,
    };
    if let Some(annotation) = payload.annotations.get(VERSION_ANNOTATION)
        && annotation != compiled.version()
    {
        return Err(DecodeError::AnnotationMismatch {
            annotation: annotation.clone(),
            document: compiled.version().to_string(),
        });
    }
    Ok(compiled)
}

/// Decode a policy file: JSON, or gzip-compressed JSON (recognised by its magic bytes).
pub fn decode_bytes(bytes: &[u8]) -> Result<CompiledPolicy, DecodeError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        decode_json(&gunzip(bytes)?)
    } else {
        decode_json(bytes)
    }
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(8).min(MAX_DOCUMENT_BYTES));
    let read = GzDecoder::new(bytes)
        .take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(DecodeError::Decompress)?;
    if read > MAX_DOCUMENT_BYTES {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

fn decode_json(bytes: &[u8]) -> Result<CompiledPolicy, DecodeError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(DecodeError::TooLarge);
    }
    // Look at the format first so that a newer document is reported as incompatible rather
    // than as "unknown field".
    #[derive(Deserialize)]
    struct FormatProbe {
        format: Option<String>,
    }
    let probe: FormatProbe = serde_json::from_slice(bytes).map_err(DecodeError::Json)?;
    match probe.format.as_deref() {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(DecodeError::Incompatible {
                found: other.to_string(),
            });
        }
        None => {
            return Err(DecodeError::Invalid(
                "the document has no \"format\" field".into(),
            ));
        }
    }
    let doc: PolicyDocument = serde_json::from_slice(bytes).map_err(DecodeError::Json)?;
    let computed = content_hash(&doc).map_err(DecodeError::Json)?;
    if doc.version != computed {
        return Err(DecodeError::HashMismatch {
            declared: doc.version.clone(),
            computed,
        });
    }
    CompiledPolicy::new(doc)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::document::*;
    use crate::negotiation::{Negotiation, PartnerType};

    pub(crate) fn sample(partners: usize) -> PolicyDocument {
        PolicyDocument {
            format: FORMAT.to_string(),
            version: String::new(),
            federation: FederationId {
                namespace: "xmpp".into(),
                name: "example".into(),
            },
            served_domains: vec!["example.com".into()],
            edge: Edge {
                hostname: "xmpp.example.com".into(),
                starttls_port: 5269,
                direct_tls_port: 5270,
            },
            gateway: Gateway {
                internal_link_port: 23456,
                log_message_bodies: false,
                internal_servers: vec![],
            },
            limits: Limits {
                connection_limit: 1000,
                partner_connection_limit: 20,
                keep_alive_interval_seconds: 300,
                stream_establishment_timeout_seconds: 60,
                stream_inactivity_timeout_seconds: 600,
                subscription_refresh_interval_seconds: 28800,
                max_stanza_bytes: 262144,
            },
            unlisted_partners: UnlistedPartners::Deny,
            partners: (0..partners)
                .map(|i| Partner {
                    name: format!("partner-{i:05}"),
                    domain: format!("partner-{i:05}.example"),
                    additional_domains: vec![format!("chat.partner-{i:05}.example")],
                    partner_type: PartnerType::Federated,
                    tls: Negotiation::Required,
                    sasl: Negotiation::Required,
                    dialback: true,
                    keep_alive: true,
                    connection_limit: 20,
                    proxy: None,
                })
                .collect(),
            access: AccessTable::default(),
        }
    }

    #[test]
    fn small_documents_are_plain_json_and_round_trip() {
        let doc = seal(sample(3)).unwrap();
        let payload = encode(&doc).unwrap();
        assert!(payload.binary_data.is_empty());
        assert!(payload.data[KEY_JSON].contains("partner-00002.example"));
        assert_eq!(payload.annotations[VERSION_ANNOTATION], doc.version);
        let back = decode(&payload).unwrap();
        assert_eq!(back.document(), &doc);
    }

    #[test]
    fn large_documents_are_compressed_and_round_trip() {
        let doc = seal(sample(5000)).unwrap();
        let payload = encode(&doc).unwrap();
        assert!(payload.data.is_empty());
        assert!(payload.size() < MAX_CONFIGMAP_BYTES);
        let back = decode(&payload).unwrap();
        assert_eq!(back.document(), &doc);
        // Files may hold either form.
        assert_eq!(
            decode_bytes(&payload.binary_data[KEY_GZIP])
                .unwrap()
                .document(),
            &doc
        );
    }

    #[test]
    fn encoding_is_deterministic() {
        assert_eq!(encode(&sample(10)).unwrap(), encode(&sample(10)).unwrap());
        let mut changed = sample(10);
        changed.partners[3].dialback = false;
        assert_ne!(
            seal(sample(10)).unwrap().version,
            seal(changed).unwrap().version
        );
    }

    #[test]
    fn tampered_content_is_refused() {
        let payload = encode(&sample(2)).unwrap();
        let mut tampered = payload.clone();
        let json = tampered.data.get_mut(KEY_JSON).unwrap();
        *json = json.replace("\"dialback\":true", "\"dialback\":false");
        let err = decode(&tampered).unwrap_err();
        assert!(matches!(err, DecodeError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not match its version"));
    }

    #[test]
    fn other_formats_are_incompatible() {
        let mut payload = encode(&sample(1)).unwrap();
        let json = payload.data.get_mut(KEY_JSON).unwrap();
        *json = json.replace(FORMAT, "xmppfed.io/policy/v2");
        let err = decode(&payload).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Incompatible { found } if found == "xmppfed.io/policy/v2")
        );
        assert!(err.to_string().contains("understands only"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut doc: serde_json::Value = serde_json::to_value(seal(sample(1)).unwrap()).unwrap();
        doc["limits"]["newKnob"] = 1.into();
        let err = decode_bytes(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
        assert!(err.to_string().contains("newKnob"), "{err}");
    }

    #[test]
    fn broken_containers_are_refused_with_reasons() {
        assert!(matches!(
            decode(&ConfigMapPayload::default()),
            Err(DecodeError::Missing)
        ));
        let mut both = encode(&sample(1)).unwrap();
        both.binary_data.insert(KEY_GZIP.into(), vec![1, 2, 3]);
        assert!(matches!(decode(&both), Err(DecodeError::Ambiguous)));
        let mut bad_gzip = ConfigMapPayload::default();
        bad_gzip
            .binary_data
            .insert(KEY_GZIP.into(), vec![0x1f, 0x8b, 0, 0]);
        assert!(matches!(decode(&bad_gzip), Err(DecodeError::Decompress(_))));
        assert!(matches!(
            decode_bytes(b"{not json"),
            Err(DecodeError::Json(_))
        ));
        let mut stale = encode(&sample(1)).unwrap();
        stale
            .annotations
            .insert(VERSION_ANNOTATION.into(), "sha256:00".into());
        assert!(matches!(
            decode(&stale),
            Err(DecodeError::AnnotationMismatch { .. })
        ));
    }

    #[test]
    fn compression_bombs_are_cut_off() {
        let zeros = vec![b' '; MAX_DOCUMENT_BYTES + 10];
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&zeros).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(matches!(decode_bytes(&bomb), Err(DecodeError::TooLarge)));
    }
}
