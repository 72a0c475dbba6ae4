//! Three real providers in this process, for tests of the client against
//! `sharecall-provider` itself (the client library cannot depend on it, so
//! these tests live in the CLI package).

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use sharecall_client::{AccountKey, Client};
use sharecall_provider::devcluster::{DevCluster, DevOptions};

/// Three real providers in this process (as `sharecall demo` runs them),
/// ready once a throwaway account can enroll (raft has a leader).
/// `importers` may send `import` requests.
pub fn real_cluster(dir: &Path, importers: &[String]) -> (tokio::runtime::Runtime, DevCluster) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut options = DevOptions::new(dir);
    options.accounts.importers = importers.to_vec();
    let cluster = rt
        .block_on(DevCluster::start(options, |_, _, addr| Ok(addr)))
        .expect("start providers");
    let probe = Client::new(&cluster.urls(), AccountKey::generate(&mut OsRng)).expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        while let Err(e) = probe.enroll(None).await {
            assert!(Instant::now() < deadline, "providers not ready: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (rt, cluster)
}

/// How many entries provider `i`'s table holds (its admin endpoint).
pub fn entries(cluster: &DevCluster, i: usize) -> u64 {
    let url = format!("http://{}/v1/admin/table", cluster.configs[i].listen.admin);
    let v: serde_json::Value = ureq::get(&url)
        .call()
        .expect("table status")
        .into_json()
        .expect("json");
    v["entries"].as_u64().expect("entries")
}
