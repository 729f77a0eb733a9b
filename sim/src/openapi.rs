//! Fly's OpenAPI document (`sim/fly-openapi3.json`, provenance beside it) as a checker.
//!
//! The sim validates every request body it receives against the operation's schema and
//! refuses a body that does not fit with a 400 naming the schema, so every test that drives
//! `provision` against the sim also checks that what `provision` sends is what Fly accepts.
//! Tests use [`Spec::check_response`] the other way round, on the sim's answers.
//!
//! The schemas are read as Fly's servers behave, which is looser than the document's types
//! in two documented ways ([`relax`]): any field may be `null` (the API is written in Go,
//! whose JSON decoder takes `null` for any field and whose encoder writes nil maps and slices
//! as `null`, as Fly's example responses show), and `autostop` may be a boolean (its own
//! description says so).

use serde_json::{Value, json};
use std::sync::OnceLock;

const DOCUMENT: &str = include_str!("../fly-openapi3.json");

struct Operation {
    method: String,
    segments: Vec<String>,
    request: Option<String>,
    responses: Vec<(String, String)>,
}

pub struct Spec {
    components: Value,
    operations: Vec<Operation>,
}

/// The parsed document, once per process.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::parse(DOCUMENT))
}

fn schema_ref(content: &Value) -> Option<String> {
    let schema = content.pointer("/content/application~1json/schema")?;
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return Some(r.to_string());
    }
    let items = schema.pointer("/items/$ref").and_then(Value::as_str)?;
    Some(format!("array:{items}"))
}

/// Lets every typed schema under `node` also be `null`, and `fly.MachineService.autostop`
/// also a boolean (see the module documentation for the sources).
fn relax(node: &mut Value) {
    if let Some(autostop) = node.pointer_mut("/schemas/fly.MachineService/properties/autostop") {
        autostop["type"] = json!(["string", "boolean", "null"]);
        autostop["enum"] = json!(["off", "stop", "suspend", true, false, null]);
    }
    allow_null(node);
}

fn allow_null(node: &mut Value) {
    match node {
        Value::Object(object) => {
            if let Some(Value::String(kind)) = object.get("type") {
                let kind = kind.clone();
                object.insert("type".into(), json!([kind, "null"]));
                if let Some(Value::Array(values)) = object.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            for (key, child) in object.iter_mut() {
                // A property that is only a `$ref` cannot carry a type: offer null beside it.
                if key == "properties"
                    && let Value::Object(properties) = child
                {
                    for property in properties.values_mut() {
                        if property.get("$ref").is_some() {
                            *property = json!({"anyOf": [property.clone(), {"type": "null"}]});
                        }
                    }
                }
                allow_null(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_null),
        _ => {}
    }
}

impl Spec {
    fn parse(text: &str) -> Spec {
        let doc: Value = serde_json::from_str(text).expect("the vendored OpenAPI document is JSON");
        let mut operations = Vec::new();
        for (path, methods) in doc["paths"].as_object().expect("paths") {
            for (method, op) in methods.as_object().expect("methods") {
                let request = op.get("requestBody").and_then(schema_ref);
                let responses = op
                    .get("responses")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .filter_map(|(status, r)| Some((status.clone(), schema_ref(r)?)))
                    .collect();
                operations.push(Operation {
                    method: method.to_uppercase(),
                    segments: path
                        .trim_matches('/')
                        .split('/')
                        .map(str::to_string)
                        .collect(),
                    request,
                    responses,
                });
            }
        }
        let mut components = doc["components"].clone();
        relax(&mut components);
        Spec {
            components,
            operations,
        }
    }

    fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let path = path.split('?').next().unwrap_or(path);
        let path = path.strip_prefix("/v1").unwrap_or(path);
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let fits = |op: &&Operation| {
            op.method == method
                && op.segments.len() == parts.len()
                && op
                    .segments
                    .iter()
                    .zip(&parts)
                    .all(|(s, p)| s.starts_with('{') || s == p)
        };
        // Literal segments beat parameters (`/machines/{id}/wait` vs `/machines/{id}`).
        self.operations
            .iter()
            .filter(fits)
            .max_by_key(|op| op.segments.iter().filter(|s| !s.starts_with('{')).count())
    }

    fn validate(&self, reference: &str, value: &Value) -> Result<(), String> {
        let (array, reference) = match reference.strip_prefix("array:") {
            Some(r) => (true, r),
            None => (false, reference),
        };
        let target = if array {
            json!({"type": "array", "items": {"$ref": reference}})
        } else {
            json!({"$ref": reference})
        };
        let mut root = target;
        root["components"] = self.components.clone();
        let validator =
            jsonschema::draft4::new(&root).map_err(|e| format!("schema {reference}: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .take(3)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} does not fit {reference}: {}",
                if array { "array" } else { "body" },
                errors.join("; ")
            ))
        }
    }

    /// Checks a request body against its operation. `Ok` when the operation has no body schema.
    pub fn check_request(&self, method: &str, path: &str, body: &Value) -> Result<(), String> {
        let op = self
            .operation(method, path)
            .ok_or_else(|| format!("{method} {path} is not in Fly's API"))?;
        match &op.request {
            Some(reference) => self.validate(reference, body),
            None => Ok(()),
        }
    }

    /// Checks a response body against the schema the operation documents for `status`.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let op = self
            .operation(method, path)
            .ok_or_else(|| format!("{method} {path} is not in Fly's API"))?;
        match op.responses.iter().find(|(s, _)| s == &status.to_string()) {
            Some((_, reference)) => self.validate(reference, body),
            None => Ok(()),
        }
    }

    /// Whether the document describes this call at all.
    pub fn knows(&self, method: &str, path: &str) -> bool {
        self.operation(method, path).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_found_by_template() {
        let spec = spec();
        assert!(spec.knows("GET", "/v1/apps/x/machines/abc/wait?state=started"));
        assert!(spec.knows("POST", "/v1/apps/x/machines/abc"));
        assert!(!spec.knows("PATCH", "/v1/apps/x"));
    }

    #[test]
    fn what_fly_answers_is_accepted_even_where_the_types_say_otherwise() {
        let spec = spec();
        let machine = json!({"id": "m1", "state": "started", "checks": null, "config": {
            "image": "x", "env": null, "metadata": null,
            "init": {"exec": null, "entrypoint": null, "cmd": null, "tty": false},
            "services": [{"protocol": "tcp", "internal_port": 8080, "autostop": false, "autostart": true}]}});
        spec.check_response("GET", "/v1/apps/a/machines/m1", 200, &machine)
            .unwrap();
        let wrong = json!({"id": "m1", "config": {"services": [{"autostop": 3}]}});
        assert!(
            spec.check_response("GET", "/v1/apps/a/machines/m1", 200, &wrong)
                .is_err()
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        let spec = spec();
        let good =
            json!({"name": "data", "region": "ams", "size_gb": 1, "require_unique_zone": false});
        spec.check_request("POST", "/v1/apps/a/volumes", &good)
            .unwrap();
        let bad = json!({"name": "data", "region": "ams", "size_gb": "one"});
        assert!(
            spec.check_request("POST", "/v1/apps/a/volumes", &bad)
                .is_err()
        );
        let bad_machine = json!({"config": {"image": "x", "services": [{"autostart": "yes"}]}});
        assert!(
            spec.check_request("POST", "/v1/apps/a/machines", &bad_machine)
                .is_err()
        );
    }
}
