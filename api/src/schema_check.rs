//! OpenAPI v3 structural-schema validation with the API server's semantics.
//!
//! kube-cel evaluates the CEL rules (`x-kubernetes-validations`) but not the OpenAPI keywords, so
//! this module does what apiextensions-apiserver does before CEL: prune `null`s of non-nullable
//! fields, reject unknown fields (as `kubectl apply` does with its default strict field
//! validation), and check `type`, `enum`, `required`, string lengths, `pattern`, numeric bounds,
//! item counts and list uniqueness (`x-kubernetes-list-type: set | map`). Hand-written because the
//! generic JSON-Schema crates know none of the `x-kubernetes-*` semantics and report errors as
//! JSON pointers rather than the `spec.field: …` messages users see from `kubectl`.

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// One reason an object is rejected, in the API server's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.partners[2].domain` (empty for the whole object).
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Render a value briefly for an error message.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Compiled `pattern`s, shared by every validation.
fn pattern_matches(pattern: &str, s: &str) -> Option<bool> {
    static CACHE: Mutex<Option<HashMap<String, Option<Regex>>>> = Mutex::new(None);
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    re.as_ref().map(|re| re.is_match(s))
}

/// Prune and validate `value` against `schema` in place. Returns every violation found.
pub fn prune_and_validate(schema: &Value, value: &mut Value, path: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    walk(schema, value, path, &mut out);
    out
}

fn walk(schema: &Value, value: &mut Value, path: &str, out: &mut Vec<Violation>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
    if value.is_null() {
        // Reached only for list items and map values (fields are pruned by the parent).
        if !flag("nullable") {
            out.push(Violation::new(
                path,
                "Invalid value: null: must not be null",
            ));
        }
        return;
    }
    if flag("x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            out.push(Violation::new(
                path,
                format!(
                    "Invalid value: {}: must be an integer or a string",
                    show(value)
                ),
            ));
        }
        return;
    }
    let preserve_unknown = flag("x-kubernetes-preserve-unknown-fields");
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return; // untyped nodes only occur with preserve-unknown-fields
    };
    let actual = type_name(value);
    let type_ok = match ty {
        "number" => value.is_number(),
        other => other == actual,
    };
    if !type_ok {
        out.push(Violation::new(
            path,
            format!(
                "Invalid value: {}: must be of type {ty}, not {actual}",
                show(value)
            ),
        ));
        return;
    }
    check_enum(schema, value, path, out);
    match value {
        Value::Object(map) => walk_object(schema, map, path, preserve_unknown, out),
        Value::Array(items) => walk_array(schema, items, path, out),
        Value::String(s) => check_string(schema, s, path, out),
        Value::Number(n) => check_number(schema, n, path, out),
        _ => {}
    }
}

fn check_enum(schema: &Map<String, Value>, value: &Value, path: &str, out: &mut Vec<Violation>) {
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(show).collect();
        out.push(Violation::new(
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                supported.join(", ")
            ),
        ));
    }
}

fn walk_object(
    schema: &Map<String, Value>,
    map: &mut Map<String, Value>,
    path: &str,
    preserve_unknown: bool,
    out: &mut Vec<Violation>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|v| v.is_object());
    // Prune nulls of non-nullable fields, as the API server does before defaulting.
    map.retain(|key, v| {
        if !v.is_null() {
            return true;
        }
        let sub = properties
            .and_then(|p| p.get(key))
            .or(additional)
            .and_then(Value::as_object);
        sub.is_some_and(|s| s.get("nullable").and_then(Value::as_bool).unwrap_or(false))
    });
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                out.push(Violation::new(join(path, key), "Required value"));
            }
        }
    }
    for (key, v) in map.iter_mut() {
        let child = join(path, key);
        if let Some(sub) = properties.and_then(|p| p.get(key)) {
            walk(sub, v, &child, out);
        } else if let Some(sub) = additional {
            walk(sub, v, &child, out);
        } else if !preserve_unknown {
            out.push(Violation::new(
                child,
                "unknown field (check the spelling; `kubectl explain` lists the fields)",
            ));
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && map.len() as u64 > max
    {
        out.push(Violation::new(
            path,
            format!("Too many: {}: must have at most {max} entries", map.len()),
        ));
    }
}

fn walk_array(
    schema: &Map<String, Value>,
    items: &mut [Value],
    path: &str,
    out: &mut Vec<Violation>,
) {
    let n = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        out.push(Violation::new(
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        let what = if min == 1 { "item" } else { "items" };
        out.push(Violation::new(
            path,
            format!("Required value: must have at least {min} {what}"),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter_mut().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    out.push(Violation::new(
                        format!("{path}[{i}]"),
                        format!("Duplicate value: {}", show(item)),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |v: &Value| keys.iter().map(|k| v.get(*k).cloned()).collect::<Vec<_>>();
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if items[..i].iter().any(|prev| key_of(prev) == key) {
                    out.push(Violation::new(
                        format!("{path}[{i}]"),
                        format!(
                            "Duplicate value: an entry with the same {} exists",
                            keys.join(", ")
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn check_string(schema: &Map<String, Value>, s: &str, path: &str, out: &mut Vec<Violation>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.push(Violation::new(
            path,
            format!("Too long: may not be more than {max} characters"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        let msg = if min == 1 {
            "Invalid value: \"\": must not be empty".to_string()
        } else {
            format!("Invalid value: {s:?}: must be at least {min} characters")
        };
        out.push(Violation::new(path, msg));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && pattern_matches(pattern, s) == Some(false)
    {
        out.push(Violation::new(
            path,
            format!("Invalid value: {s:?}: must match '{pattern}'"),
        ));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && s.parse::<k8s_openapi::jiff::Timestamp>().is_err()
    {
        out.push(Violation::new(
            path,
            format!("Invalid value: {s:?}: must be an RFC 3339 date-time"),
        ));
    }
}

fn check_number(
    schema: &Map<String, Value>,
    n: &serde_json::Number,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let Some(x) = n.as_f64() else { return };
    let excl = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let bad = if excl("exclusiveMinimum") {
            x <= min
        } else {
            x < min
        };
        if bad {
            let rel = if excl("exclusiveMinimum") {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(Violation::new(
                path,
                format!("Invalid value: {n}: must be {rel} {min}"),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let bad = if excl("exclusiveMaximum") {
            x >= max
        } else {
            x > max
        };
        if bad {
            let rel = if excl("exclusiveMaximum") {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(Violation::new(
                path,
                format!("Invalid value: {n}: must be {rel} {max}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, mut value: Value) -> (Vec<String>, Value) {
        let v = prune_and_validate(&schema, &mut value, "spec");
        (v.iter().map(ToString::to_string).collect(), value)
    }

    #[test]
    fn types_enums_and_required() {
        let schema = json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "enum": ["X", "Y"]},
            "b": {"type": "integer", "minimum": 1.0, "maximum": 10.0},
            "c": {"type": "boolean"}
        }});
        let (e, _) = check(schema.clone(), json!({"a": "Z", "b": 0, "c": "yes"}));
        assert_eq!(
            e,
            vec![
                "spec.a: Unsupported value: \"Z\": supported values: \"X\", \"Y\"",
                "spec.b: Invalid value: 0: must be greater than or equal to 1",
                "spec.c: Invalid value: \"yes\": must be of type boolean, not string",
            ]
        );
        let (e, _) = check(schema, json!({"b": 11}));
        assert_eq!(
            e,
            vec![
                "spec.a: Required value",
                "spec.b: Invalid value: 11: must be less than or equal to 10"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_rejected_and_nulls_pruned() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string"}, "n": {"type": "string", "nullable": true}
        }});
        let (e, v) = check(schema, json!({"a": null, "n": null, "tpyo": 1}));
        assert_eq!(
            e,
            vec![
                "spec.tpyo: unknown field (check the spelling; `kubectl explain` lists the fields)"
            ]
        );
        assert_eq!(v, json!({"n": null, "tpyo": 1}));
    }

    #[test]
    fn strings_lists_and_sets() {
        let schema = json!({"type": "object", "properties": {
            "s": {"type": "string", "maxLength": 3, "minLength": 1},
            "l": {"type": "array", "maxItems": 2, "minItems": 1, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "m": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                  "items": {"type": "object", "properties": {"type": {"type": "string"}}}}
        }});
        let (e, _) = check(
            schema.clone(),
            json!({"s": "toolong", "l": ["a", "b", "a"], "m": [{"type": "A"}, {"type": "A"}]}),
        );
        assert_eq!(
            e,
            vec![
                "spec.l: Too many: 3: must have at most 2 items",
                "spec.l[2]: Duplicate value: \"a\"",
                "spec.m[1]: Duplicate value: an entry with the same type exists",
                "spec.s: Too long: may not be more than 3 characters",
            ]
        );
        let (e, _) = check(schema, json!({"s": "", "l": []}));
        assert_eq!(
            e,
            vec![
                "spec.l: Required value: must have at least 1 item",
                "spec.s: Invalid value: \"\": must not be empty"
            ]
        );
    }

    #[test]
    fn maps_and_int_or_string() {
        let schema = json!({"type": "object", "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "q": {"x-kubernetes-int-or-string": true}
        }});
        let (e, _) = check(schema, json!({"labels": {"a": "b", "c": 1}, "q": [1]}));
        assert_eq!(
            e,
            vec![
                "spec.labels.c: Invalid value: 1: must be of type string, not integer",
                "spec.q: Invalid value: [1]: must be an integer or a string",
            ]
        );
    }
}
