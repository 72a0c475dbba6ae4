//! The routers as a client sees them: each table served with stub
//! handlers (no provider state needed) over a real socket.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::routing::on;

use super::routes::{Method, Operation, Route, ADMIN, PUBLIC};
use super::{admin, public};

/// `table` served by [`super::build`] with handlers that answer their
/// operation id.
async fn serve<Op>(table: &'static [Route<Op>]) -> SocketAddr
where
    Op: Operation + Send + Sync + 'static,
{
    let router = super::build(table, |op, method| {
        on(method, move || async move { op.operation_id() })
    })
    .with_state(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Status, `Allow` header and body of `method path` at `addr`.
async fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, Option<String>, String) {
    let (method, url) = (method.to_string(), format!("http://{addr}{path}"));
    tokio::task::spawn_blocking(move || {
        let r = match ureq::request(&method, &url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let allow = r.header("allow").map(str::to_string);
        (r.status(), allow, r.into_string().expect("body"))
    })
    .await
    .expect("request thread")
}

/// `/v1/requests/:id` with a value for every segment parameter.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with(':') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

const NOT_FOUND: &str = r#"{"error":{"code":"not_found","message":"no such endpoint"}}"#;

/// Every row is served by its own handler (GET rows also on HEAD); every
/// other method on a row's path is a 405 whose `Allow` lists the table's
/// methods in table order; paths of the other table are 404.
async fn check<Op>(table: &'static [Route<Op>], others: &[&str])
where
    Op: Operation + Send + Sync + 'static,
{
    let addr = serve(table).await;
    for r in table {
        let path = concrete(r.path);
        let method = r.method.openapi_key().to_ascii_uppercase();
        let (status, _, body) = call(addr, &method, &path).await;
        assert_eq!(
            (status, body.as_str()),
            (200, r.op.operation_id()),
            "{method} {path}"
        );
        if r.method == Method::Get {
            let (status, _, body) = call(addr, "HEAD", &path).await;
            assert_eq!((status, body.as_str()), (200, ""), "HEAD {path}");
        }
        let allow: Vec<&str> = table
            .iter()
            .filter(|o| o.path == r.path)
            .flat_map(|o| match o.method {
                Method::Get => ["GET", "HEAD"].as_slice(),
                Method::Post => ["POST"].as_slice(),
            })
            .copied()
            .collect();
        let (status, header, _) = call(addr, "DELETE", &path).await;
        assert_eq!(status, 405, "DELETE {path}");
        assert_eq!(header, Some(allow.join(",")), "Allow of {path}");
    }
    for path in others.iter().chain(&["/", "/v1/nothing"]) {
        let (status, _, body) = call(addr, "GET", path).await;
        assert_eq!((status, body.as_str()), (404, NOT_FOUND), "GET {path}");
    }
}

fn paths<Op>(table: &[Route<Op>]) -> Vec<String> {
    table.iter().map(|r| concrete(r.path)).collect()
}

#[tokio::test]
async fn public_router_serves_exactly_the_public_table() {
    let admin = paths(ADMIN);
    let admin: Vec<&str> = admin.iter().map(String::as_str).collect();
    check(PUBLIC, &admin).await;
}

#[tokio::test]
async fn admin_router_serves_exactly_the_admin_table() {
    let public = paths(PUBLIC);
    let public: Vec<&str> = public.iter().map(String::as_str).collect();
    check(ADMIN, &public).await;
    // The header the chained `post(sequence).get(applied)` gave.
    let addr = serve(ADMIN).await;
    let (_, allow, _) = call(addr, "PUT", "/v1/admin/sequence").await;
    assert_eq!(allow.as_deref(), Some("POST,GET,HEAD"));
}

/// The real routers are built from the tables alone: building them (axum
/// refuses a method twice on one path) covers every row, and no row
/// repeats a method on a path.
#[test]
fn routers_are_built_from_the_route_table() {
    let _ = public::routes();
    let _ = admin::routes();
    let pairs: BTreeSet<(&str, &str)> = PUBLIC
        .iter()
        .map(|r| (r.path, r.method.openapi_key()))
        .chain(ADMIN.iter().map(|r| (r.path, r.method.openapi_key())))
        .collect();
    assert_eq!(pairs.len(), PUBLIC.len() + ADMIN.len());
}
