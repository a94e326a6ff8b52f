//! Route registration that documents as it registers.
//!
//! Every API route is added through [`ApiRoutes::add`], which records its OpenAPI operation
//! next to the axum handler. `/openapi.json` is generated from that record, so a served route
//! cannot be missing from the document.

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::MethodRouter;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::AppState;

/// OpenAPI description of one operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `get`, `post`, ...
    pub method: &'static str,
    /// Path template with `{param}` segments.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Grouping tag.
    pub tag: &'static str,
    /// Whether the route needs an API key.
    pub authenticated: bool,
    /// Request body schema.
    pub request: Option<Value>,
    /// Success status and response schema.
    pub response: (u16, Option<Value>),
    /// Query parameters `(name, description)`.
    pub query: Vec<(&'static str, &'static str)>,
}

impl Operation {
    /// An authenticated operation answering 200.
    pub fn new(
        method: &'static str,
        path: &'static str,
        tag: &'static str,
        summary: &'static str,
    ) -> Self {
        Operation {
            method,
            path,
            summary,
            tag,
            authenticated: true,
            request: None,
            response: (200, None),
            query: Vec::new(),
        }
    }

    /// Sets the request body schema from a type.
    pub fn request<T: JsonSchema>(mut self) -> Self {
        self.request = Some(schema_of::<T>());
        self
    }

    /// Sets the response schema (wrapped in the `{"data": ...}` envelope).
    pub fn response<T: JsonSchema>(mut self) -> Self {
        self.response.1 = Some(json!({
            "type": "object",
            "properties": {"data": schema_of::<T>()},
        }));
        self
    }

    /// Sets a bare (not enveloped) response schema.
    pub fn bare_response(mut self, schema: Value) -> Self {
        self.response.1 = Some(schema);
        self
    }

    /// Sets the success status.
    pub fn status(mut self, status: u16) -> Self {
        self.response.0 = status;
        self
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: &'static str, description: &'static str) -> Self {
        self.query.push((name, description));
        self
    }

    /// Marks the route as public.
    pub fn public(mut self) -> Self {
        self.authenticated = false;
        self
    }
}

fn schema_of<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
    }
    value
}

/// Routes plus their documentation.
#[derive(Default)]
pub struct ApiRoutes {
    routes: BTreeMap<&'static str, MethodRouter<AppState>>,
    operations: Vec<Operation>,
}

impl ApiRoutes {
    /// Empty set.
    pub fn new() -> Self {
        ApiRoutes::default()
    }

    /// Registers `handler` and documents it with `operation`.
    pub fn add(mut self, operation: Operation, handler: MethodRouter<AppState>) -> Self {
        let path = operation.path;
        let merged = match self.routes.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        self.routes.insert(path, merged);
        self.operations.push(operation);
        self
    }

    /// Combines two sets.
    pub fn merge(mut self, other: ApiRoutes) -> Self {
        for (path, handler) in other.routes {
            let merged = match self.routes.remove(path) {
                Some(existing) => existing.merge(handler),
                None => handler,
            };
            self.routes.insert(path, merged);
        }
        self.operations.extend(other.operations);
        self
    }

    /// Documented operations.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// Builds the axum router.
    pub fn into_router(self) -> (Router<AppState>, Vec<Operation>) {
        let mut router = Router::new();
        for (path, handler) in self.routes {
            router = router.route(path, handler);
        }
        (router, self.operations)
    }
}

/// The OpenAPI 3.1 document for `operations`.
pub fn openapi_document(operations: &[Operation]) -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for operation in operations {
        let mut parameters: Vec<Value> = path_params(operation.path)
            .into_iter()
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        parameters.extend(operation.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
        }));
        let mut responses = Map::new();
        let mut success = json!({"description": "success"});
        if let Some(schema) = &operation.response.1 {
            success["content"] = json!({"application/json": {"schema": schema}});
        }
        responses.insert(operation.response.0.to_string(), success);
        responses.insert(
            "default".to_string(),
            json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}}),
        );
        let mut entry = json!({
            "operationId": operation_id(operation),
            "summary": operation.summary,
            "tags": [operation.tag],
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(schema) = &operation.request {
            entry["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        if operation.authenticated {
            entry["security"] = json!([{"bearerAuth": []}]);
        } else {
            entry["security"] = json!([]);
        }
        paths
            .entry(operation.path)
            .or_default()
            .insert(operation.method.to_string(), entry);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Ferry API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Ferry's HTTP API, compatible with Polytomic's public REST API (2025-09-18)."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ApiError": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "integer"},
                        "message": {"type": "string"},
                        "key": {"type": "string"},
                        "metadata": {"type": "object"}
                    }
                }
            }
        }
    })
}

/// `{param}` names in a path template.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn operation_id(operation: &Operation) -> String {
    let mut id = operation.method.to_string();
    for segment in operation
        .path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api")
    {
        let cleaned: String = segment
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        id.push('_');
        id.push_str(&cleaned);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_params_are_found() {
        assert_eq!(path_params("/api/connections/{id}/proxy"), vec!["id"]);
        assert!(path_params("/api/me").is_empty());
    }

    #[test]
    fn document_lists_operations() {
        let operations = vec![
            Operation::new("get", "/api/me", "identity", "who am i"),
            Operation::new("delete", "/api/connections/{id}", "connections", "delete").status(204),
        ];
        let doc = openapi_document(&operations);
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["paths"]["/api/me"]["get"]["summary"], "who am i");
        assert_eq!(
            doc["paths"]["/api/connections/{id}"]["delete"]["parameters"][0]["name"],
            "id"
        );
        assert!(doc["paths"]["/api/connections/{id}"]["delete"]["responses"]["204"].is_object());
    }
}
