//! The OpenAPI document (`docs/openapi.json`), served at
//! `GET /v1/openapi.json`, and the test that keeps it in step with the
//! route table.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The OpenAPI document (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::super::routes::{Operation, Route, ADMIN, PUBLIC};
    use super::OPENAPI;

    /// The operation keys of an OpenAPI path item.
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// `/v1/requests/:id` → `/v1/requests/{id}`.
    fn openapi_path(route: &str) -> String {
        route
            .split('/')
            .map(|seg| match seg.strip_prefix(':') {
                Some(name) => format!("{{{name}}}"),
                None => seg.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// One documented or routed operation: path (OpenAPI syntax), method,
    /// operation id, and whether it is an admin operation.
    type Op = (String, String, String, bool);

    fn rows<O: Operation>(table: &[Route<O>], admin: bool) -> impl Iterator<Item = Op> + '_ {
        table.iter().map(move |r| {
            (
                openapi_path(r.path),
                r.method.openapi_key().to_string(),
                r.op.operation_id().to_string(),
                admin,
            )
        })
    }

    /// Every operation of both route tables.
    fn table_operations() -> BTreeSet<Op> {
        rows(PUBLIC, false).chain(rows(ADMIN, true)).collect()
    }

    /// Every route of both tables with its methods.
    fn routes() -> BTreeSet<(String, BTreeSet<String>)> {
        let mut out = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
        for (path, method, _, _) in table_operations() {
            out.entry(path).or_default().insert(method);
        }
        out.into_iter().collect()
    }

    fn document() -> Value {
        serde_json::from_str(OPENAPI).expect("docs/openapi.json is valid JSON")
    }

    #[test]
    fn openapi_document_covers_every_route() {
        let doc = document();
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(
            version.starts_with("3.1"),
            "openapi is {version:?}, not 3.1"
        );
        let paths = doc["paths"].as_object().expect("paths is an object");
        let mut documented = BTreeSet::new();
        for (path, item) in paths {
            let item = item.as_object().expect("a path item is an object");
            let methods: BTreeSet<String> = METHODS
                .iter()
                .filter(|m| item.contains_key(**m))
                .map(|m| m.to_string())
                .collect();
            documented.insert((path.clone(), methods));
        }
        assert_eq!(
            documented,
            routes(),
            "docs/openapi.json paths and methods differ from http::routes"
        );
    }

    /// Each operation is documented under the table's operation id, and
    /// tagged `admin` exactly when the admin router serves it.
    #[test]
    fn openapi_operations_match_the_route_table() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths is an object");
        let mut documented = BTreeSet::new();
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let id = op["operationId"].as_str().expect("an operationId");
                let admin = op["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|t| t == "admin"));
                documented.insert((path.clone(), method.to_string(), id.to_string(), admin));
            }
        }
        assert_eq!(
            documented,
            table_operations(),
            "docs/openapi.json operations differ from http::routes"
        );
    }
}
