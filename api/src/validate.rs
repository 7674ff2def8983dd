//! `xmppfed validate`: check manifests offline as the API server would (schema + CEL), then the
//! operator's cross-object rules among the objects given. Pure over (path, text) pairs so the
//! CLI only reads files.

use crate::GROUP;
use crate::admission::{Admission, Admitted, check_type_meta};
use crate::crosscheck::{ObjectSet, check};
use crate::findings::Severity;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// One input file (or standard input).
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The manifest would be rejected, or would not be applied.
    Error,
    /// Accepted, but worth a look (risky settings, references to objects not given).
    Warning,
    /// Not checked (another API group).
    Skipped,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub level: Level,
    /// `file#document` (1-based document number inside a multi-document file).
    pub location: String,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Skipped => "skipped",
        };
        write!(f, "{}: {level}:", self.location)?;
        if let Some(o) = &self.object {
            write!(f, " {o}:")?;
        }
        if !self.field.is_empty() {
            write!(f, " {}:", self.field)?;
        }
        write!(f, " {}", self.message)
    }
}

/// What `validate` found.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// The objects that passed admission.
    pub objects: ObjectSet,
    /// xmppfed objects examined.
    pub checked: usize,
}

impl Report {
    pub fn count(&self, level: Level) -> usize {
        self.problems.iter().filter(|p| p.level == level).count()
    }
    pub fn has_errors(&self) -> bool {
        self.count(Level::Error) > 0
    }
    pub fn summary(&self, files: usize) -> String {
        format!(
            "checked {} xmppfed object(s) in {files} file(s): {} error(s), {} warning(s), {} skipped",
            self.checked,
            self.count(Level::Error),
            self.count(Level::Warning),
            self.count(Level::Skipped)
        )
    }
}

fn describe(obj: &Value) -> String {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("?").to_string();
    let meta = obj.get("metadata");
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    format!(
        "{} {ns}/{}",
        s(obj.get("kind")),
        s(meta.and_then(|m| m.get("name")))
    )
}

/// Validate every document of every source.
pub fn validate_sources(sources: &[Source], admission: &Admission) -> Report {
    let mut report = Report::default();
    // Where each admitted object was defined, for cross-object findings and duplicates.
    let mut locations: BTreeMap<String, String> = BTreeMap::new();

    for source in sources {
        let docs: Vec<Value> = match serde_saphyr::from_multiple::<Value>(&source.text) {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(Problem {
                    level: Level::Error,
                    location: source.path.clone(),
                    object: None,
                    field: String::new(),
                    message: format!(
                        "not valid YAML, nothing in this file was checked: {}",
                        one_line(&e.to_string())
                    ),
                });
                continue;
            }
        };
        let mut items = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let location = format!("{}#{}", source.path, i + 1);
            // `kind: List` (what `kubectl get -o yaml` prints) holds objects in `items`.
            if doc.get("kind").and_then(Value::as_str) == Some("List") {
                for (j, item) in doc
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    items.push((format!("{location}.items[{j}]"), item.clone()));
                }
            } else {
                items.push((location, doc));
            }
        }
        for (location, doc) in items {
            check_document(&location, &doc, admission, &mut report, &mut locations);
        }
    }

    for f in check(&report.objects) {
        let key = format!("{} {}/{}", f.object.kind, f.object.namespace, f.object.name);
        report.problems.push(Problem {
            level: match f.severity {
                Severity::Error => Level::Error,
                Severity::Warning => Level::Warning,
            },
            location: locations.get(&key).cloned().unwrap_or_default(),
            object: Some(key),
            field: f.field,
            message: format!("{} ({})", f.message, f.reason),
        });
    }
    report
}

fn check_document(
    location: &str,
    doc: &Value,
    admission: &Admission,
    report: &mut Report,
    locations: &mut BTreeMap<String, String>,
) {
    let problem = |level, object: Option<String>, field: &str, message: String| Problem {
        level,
        location: location.to_string(),
        object,
        field: field.to_string(),
        message,
    };
    match doc {
        Value::Null => return, // empty document, e.g. after a trailing `---`
        Value::Object(_) => {}
        other => {
            report.problems.push(problem(
                Level::Error,
                None,
                "",
                format!(
                    "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                    kind_of(other)
                ),
            ));
            return;
        }
    }
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if group != GROUP {
        let what = match (doc.get("apiVersion"), doc.get("kind")) {
            (Some(_), Some(_)) => format!("{api_version} {}: not an {GROUP} kind", describe(doc)),
            _ => "no apiVersion/kind: not a Kubernetes object".to_string(),
        };
        let level = if what.starts_with("no apiVersion") {
            Level::Error
        } else {
            Level::Skipped
        };
        report.problems.push(problem(level, None, "", what));
        return;
    }
    report.checked += 1;
    let object = describe(doc);
    if let Err(v) = check_type_meta(doc) {
        for v in v {
            report.problems.push(problem(
                Level::Error,
                Some(object.clone()),
                &v.field,
                v.message,
            ));
        }
        return;
    }
    if let Some(previous) = locations.get(&object) {
        report.problems.push(problem(
            Level::Error,
            Some(object.clone()),
            "metadata.name",
            format!("defined twice (also at {previous}); the API server keeps only one"),
        ));
        return;
    }
    match admission.admit(doc, None) {
        Ok(admitted) => {
            locations.insert(object, location.to_string());
            match admitted {
                Admitted::Federation(f) => report.objects.federations.push(*f),
                Admitted::Partner(p) => report.objects.partners.push(*p),
                Admitted::AccessPolicy(p) => report.objects.policies.push(*p),
            }
        }
        Err(violations) => {
            for v in violations {
                report.problems.push(problem(
                    Level::Error,
                    Some(object.clone()),
                    &v.field,
                    v.message,
                ));
            }
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "a list",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        _ => "something else",
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)]) -> Report {
        let sources: Vec<Source> = files
            .iter()
            .map(|(p, t)| Source {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect();
        validate_sources(&sources, &Admission::new())
    }

    const FED: &str = "apiVersion: xmppfed.io/v1alpha1
kind: XmppFederation
metadata: {name: contoso, namespace: xmpp}
spec:
  domains: [contoso.com]
  tls: {issuerRef: {name: le}}
  gateway: {internalServers: [{host: prosody.internal}]}
";

    #[test]
    fn multi_document_files_lists_and_skips() {
        let text = format!(
            "{FED}---\napiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata: {{name: fabrikam, namespace: xmpp}}\nspec: {{domain: fabrikam.com, saslNegotiation: Optional}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\n---\n"
        );
        let r = run(&[("all.yaml", &text)]);
        assert_eq!(r.checked, 2);
        assert_eq!(r.count(Level::Error), 0, "{:#?}", r.problems);
        assert_eq!(r.count(Level::Skipped), 1);
        assert!(r.problems.iter().any(|p| p.location == "all.yaml#3" && p.message.contains("not an xmppfed.io kind")));
        assert_eq!(r.objects.partners.len(), 1);

        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: xmppfed.io/v1alpha1\n  kind: ExternalAccessPolicy\n  metadata: {name: g}\n  spec: {scope: Global}\n";
        let r = run(&[("list.yaml", list)]);
        assert_eq!(r.objects.policies.len(), 1);
        // Its federation is not among the objects: a warning, not an error.
        assert!(!r.has_errors());
        assert!(
            r.problems
                .iter()
                .any(|p| p.level == Level::Warning && p.message.contains("NoFederation"))
        );
    }

    #[test]
    fn errors_name_file_object_and_field() {
        let bad = "apiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata: {name: legacy, namespace: xmpp}\nspec: {domain: legacy.example, tlsNegotiation: NotSupported, saslNegotiation: NotSupported, supportDialbackNegotiation: false}\n";
        let r = run(&[("p.yaml", bad)]);
        let line = r
            .problems
            .iter()
            .find(|p| p.level == Level::Error)
            .unwrap()
            .to_string();
        assert!(
            line.starts_with(
                "p.yaml#1: error: XmppAllowedPartner xmpp/legacy: spec.supportDialbackNegotiation:"
            ),
            "{line}"
        );
        assert!(line.contains("saslNegotiation: NotSupported"));
    }

    #[test]
    fn cross_object_conflicts_are_errors() {
        let p = |name: &str, domain: &str| {
            format!(
                "---\napiVersion: xmppfed.io/v1alpha1\nkind: XmppAllowedPartner\nmetadata: {{name: {name}, namespace: xmpp}}\nspec: {{domain: {domain}}}\n"
            )
        };
        let g = |name: &str| {
            format!(
                "---\napiVersion: xmppfed.io/v1alpha1\nkind: ExternalAccessPolicy\nmetadata: {{name: {name}, namespace: xmpp}}\nspec: {{scope: Global}}\n"
            )
        };
        let text = format!(
            "{FED}{}{}{}{}{}",
            p("a", "fabrikam.com"),
            p("b", "fabrikam.com"),
            p("c", "contoso.com"),
            g("g1"),
            g("g2")
        );
        let r = run(&[("x.yaml", &text)]);
        let errors: Vec<String> = r
            .problems
            .iter()
            .filter(|p| p.level == Level::Error)
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors.iter().any(|e| e.contains(
            "xmpp/b: spec.domain: fabrikam.com is already claimed by XmppAllowedPartner a"
        )));
        assert!(errors.iter().any(|e| e.contains(
            "xmpp/c: spec.domain: contoso.com is a domain served by XmppFederation contoso"
        )));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("xmpp/g2: spec.scope:") && e.contains("DuplicateGlobalPolicy"))
        );
        assert!(errors.iter().all(|e| e.starts_with("x.yaml#")));
    }

    #[test]
    fn malformed_input_is_reported_not_fatal() {
        let r = run(&[
            ("a.yaml", "key: [unclosed"),
            ("b.yaml", "- just\n- a list\n"),
            (
                "c.yaml",
                "apiVersion: xmppfed.io/v1alpha1\nkind: Nope\nmetadata: {name: x}\n",
            ),
            ("d.yaml", ""),
        ]);
        assert_eq!(r.count(Level::Error), 3, "{:#?}", r.problems);
        assert!(r.problems[0].message.starts_with("not valid YAML"));
        assert!(r.problems[1].message.contains("found a list"));
        assert!(
            r.problems[2]
                .message
                .contains("\"Nope\" is not a kind of xmppfed.io")
        );
    }

    #[test]
    fn duplicates_are_errors() {
        let r = run(&[("a.yaml", FED), ("b.yaml", FED)]);
        assert!(
            r.problems.iter().any(|p| p.location == "b.yaml#1"
                && p.message.contains("defined twice (also at a.yaml#1)"))
        );
    }
}
