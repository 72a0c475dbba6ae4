//! Failures of the SMC engine surface as clear, bounded errors: tampered
//! shares, unknown certificates, dead or silent peers, parties out of step.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use sharecall_proto::sharing::share_batch;
use sharecall_proto::{Fp, PartyId, ShareVec};
use sharecall_provider::identity::Identity;
use sharecall_provider::smc::local::LocalCluster;
use sharecall_provider::smc::{Engine, EngineConfig, PoolSizing, SmcError, SmcResult};

fn small_config(op_timeout: Duration) -> EngineConfig {
    EngineConfig {
        lanes: 1,
        op_timeout,
        link_timeout: Duration::from_secs(5),
        squares: PoolSizing {
            target: 64,
            chunk: 64,
        },
        bit_blocks: PoolSizing {
            target: 4,
            chunk: 4,
        },
        ..EngineConfig::default()
    }
}

fn shares(n: u64) -> [ShareVec; 3] {
    let values: Vec<Fp> = (0..n).map(Fp::from_u64).collect();
    share_batch(&values, &mut ChaCha12Rng::seed_from_u64(n))
}

fn p(i: usize) -> PartyId {
    PartyId::new(i).expect("party")
}

async fn open_and_verify(e: &Engine, id: u64, x: &ShareVec) -> SmcResult<Vec<Fp>> {
    let mut s = e.session(0, id).await?;
    let v = s.open(x).await?;
    s.verify().await?;
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_share_is_detected_and_named() {
    let cluster = LocalCluster::start(&small_config(Duration::from_secs(5)))
        .await
        .expect("link");
    let mut x = shares(10);
    // P1 lies about its first component x1, which it sends to P2; P0 holds
    // the same component and sends P2 its digest.
    x[1].first[3] += Fp::ONE;
    let [e0, e1, e2] = &cluster.engines;
    let (r0, r1, r2) = tokio::join!(
        open_and_verify(e0, 1, &x[0]),
        open_and_verify(e1, 1, &x[1]),
        open_and_verify(e2, 1, &x[2]),
    );
    match r2 {
        Err(SmcError::Inconsistent {
            value_from,
            check_from,
            ..
        }) => {
            assert_eq!(value_from, p(1));
            assert_eq!(check_from, p(0));
        }
        other => panic!("P2 did not detect the tampered share: {other:?}"),
    }
    // The others learn of the abort before they can act on the result.
    for r in [r0, r1] {
        assert!(
            matches!(r, Err(SmcError::PeerAborted { peer, .. }) if peer == p(2)),
            "{r:?}"
        );
    }
    // The lane is usable again for the next session.
    let y = shares(4);
    let (a, b, c) = tokio::join!(
        open_and_verify(e0, 2, &y[0]),
        open_and_verify(e1, 2, &y[1]),
        open_and_verify(e2, 2, &y[2]),
    );
    let expected: Vec<Fp> = (0..4).map(Fp::from_u64).collect();
    assert_eq!(a.expect("P0"), expected);
    assert_eq!(b.expect("P1"), expected);
    assert_eq!(c.expect("P2"), expected);
}

/// Some party's error names `liar` as the one that sent two versions.
fn assert_named(liar: PartyId, results: [&SmcResult<Vec<Fp>>; 3]) {
    let named = results.iter().any(
        |r| matches!(r, Err(SmcError::Inconsistent { value_from, .. }) if *value_from == liar),
    );
    assert!(named, "{results:?}");
}

/// All three parties opened 0², 1², …, (n−1)².
fn assert_squares(n: u64, results: [SmcResult<Vec<Fp>>; 3]) {
    let expected: Vec<Fp> = (0..n).map(|v| Fp::from_u64(v * v)).collect();
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap_or_else(|e| panic!("P{i}: {e}")), expected, "P{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocating_opening_is_caught_by_verify() {
    let cluster = LocalCluster::start(&small_config(Duration::from_secs(5)))
        .await
        .expect("link");
    let x = shares(5);
    let [e0, e1, e2] = &cluster.engines;
    async fn mo(e: &Engine, x: &ShareVec, lie_to: Option<PartyId>) -> SmcResult<Vec<Fp>> {
        let mut s = e.session(0, 1).await?;
        if let Some(victim) = lie_to {
            s.debug_equivocate_to(victim);
        }
        let v = s.mul_open(x, x).await?;
        s.verify().await?;
        Ok(v)
    }
    // P0 sends P1 a different product share than it sends P2.
    let (a, b, c) = tokio::join!(
        mo(e0, &x[0], Some(p(1))),
        mo(e1, &x[1], None),
        mo(e2, &x[2], None)
    );
    assert_named(p(0), [&a, &b, &c]);
    // Both honest parties refuse the result; the liar's own view is moot.
    assert!(b.is_err() && c.is_err(), "{a:?} {b:?} {c:?}");

    // Honest parties agree after verify.
    async fn honest(e: &Engine, x: &ShareVec) -> SmcResult<Vec<Fp>> {
        let mut s = e.session(0, 2).await?;
        let v = s.mul_open(x, x).await?;
        s.verify().await?;
        Ok(v)
    }
    let (a, b, c) = tokio::join!(honest(e0, &x[0]), honest(e1, &x[1]), honest(e2, &x[2]));
    assert_squares(5, [a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocating_opening_is_caught_by_mul_verify() {
    let cluster = LocalCluster::start(&small_config(Duration::from_secs(5)))
        .await
        .expect("link");
    let x = shares(5);
    let [e0, e1, e2] = &cluster.engines;
    async fn mo(e: &Engine, x: &ShareVec, lie_to: Option<PartyId>) -> SmcResult<Vec<Fp>> {
        let mut s = e.session(0, 1).await?;
        if let Some(victim) = lie_to {
            s.debug_equivocate_to(victim);
        }
        s.mul_open(x, x).await?;
        let fresh = s.mul_verify(x, x).await?;
        s.open(&fresh).await
    }
    // P2 sends P0 a different product share than it sends P1; the check
    // rides on the reshare round and must still catch it.
    let (a, b, c) = tokio::join!(
        mo(e0, &x[0], None),
        mo(e1, &x[1], None),
        mo(e2, &x[2], Some(p(0)))
    );
    assert_named(p(2), [&a, &b, &c]);
    assert!(a.is_err() && b.is_err(), "{a:?} {b:?} {c:?}");

    // Honest: the fused round multiplies correctly.
    async fn honest(e: &Engine, x: &ShareVec) -> SmcResult<Vec<Fp>> {
        let mut s = e.session(0, 2).await?;
        s.mul_open(x, x).await?;
        let fresh = s.mul_verify(x, x).await?;
        s.open(&fresh).await
    }
    let (a, b, c) = tokio::join!(honest(e0, &x[0]), honest(e1, &x[1]), honest(e2, &x[2]));
    assert_squares(5, [a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_certificate_is_refused() {
    let real: Vec<Identity> = (0..3)
        .map(|i| Identity::generate(&format!("p{i}")).expect("identity"))
        .collect();
    // Everybody pins a certificate for P2 that P2 does not have.
    let impostor = Identity::generate("impostor").expect("identity");
    let pinned = vec![real[0].clone(), real[1].clone(), impostor];
    let started = Instant::now();
    let result =
        LocalCluster::start_with(&small_config(Duration::from_secs(5)), &real, Some(&pinned)).await;
    match result {
        Err(SmcError::Link { peer, reason }) => {
            assert_eq!(peer, p(2), "{reason}");
            assert!(
                reason.contains("certificate") || reason.contains("pinned"),
                "reason should name the certificate problem: {reason}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a peer with an unpinned certificate was accepted"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_peer_surfaces_an_error_in_bounded_time() {
    let cluster = LocalCluster::start(&small_config(Duration::from_secs(3)))
        .await
        .expect("link");
    let LocalCluster { engines, .. } = cluster;
    let [e0, e1, e2] = engines;
    drop(e2); // closes P2's connections, like a killed process
    let x = shares(3);
    let started = Instant::now();
    let (r0, r1) = tokio::join!(
        open_and_verify(&e0, 1, &x[0]),
        open_and_verify(&e1, 1, &x[1])
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    for r in [r0, r1] {
        match r {
            Err(SmcError::ConnectionLost { peer, .. }) | Err(SmcError::Timeout { peer, .. }) => {
                assert_eq!(peer, p(2))
            }
            Err(SmcError::PeerAborted { .. }) => {}
            other => panic!("expected a connection error naming P2, got {other:?}"),
        }
    }
    assert!(!e0.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_times_out_naming_it() {
    let cluster = LocalCluster::start(&small_config(Duration::from_millis(800)))
        .await
        .expect("link");
    let [e0, e1, _e2] = &cluster.engines;
    let x = shares(3);
    let started = Instant::now();
    // P2 never runs the session.
    let (r0, r1) = tokio::join!(open_and_verify(e0, 1, &x[0]), open_and_verify(e1, 1, &x[1]));
    assert!(started.elapsed() < Duration::from_secs(5));
    let named_p2 = |r: &SmcResult<Vec<Fp>>| match r {
        Err(SmcError::Timeout { peer, .. }) => *peer == p(2),
        Err(SmcError::PeerAborted { .. }) => true,
        _ => false,
    };
    assert!(named_p2(&r0), "{r0:?}");
    assert!(named_p2(&r1), "{r1:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_out_of_step_get_an_error_not_a_result() {
    let cluster = LocalCluster::start(&small_config(Duration::from_secs(3)))
        .await
        .expect("link");
    let [e0, e1, e2] = &cluster.engines;
    let x = shares(3);
    async fn open_only(e: &Engine, x: &ShareVec) -> SmcResult<Vec<Fp>> {
        e.session(0, 1).await?.open(x).await
    }
    async fn mul_instead(e: &Engine, x: &ShareVec) -> SmcResult<Vec<Fp>> {
        e.session(0, 1).await?.mul_open(x, x).await
    }
    let (r0, r1, r2) = tokio::join!(
        open_only(e0, &x[0]),
        open_only(e1, &x[1]),
        mul_instead(e2, &x[2])
    );
    assert!(r2.is_err(), "P2 ran another operation and must fail");
    let out_of_step = |r: &SmcResult<Vec<Fp>>| {
        matches!(
            r,
            Err(SmcError::OutOfStep { .. }) | Err(SmcError::PeerAborted { .. })
        )
    };
    assert!(out_of_step(&r0) || out_of_step(&r1), "{r0:?} {r1:?}");
    let msg = [&r0, &r1, &r2]
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(msg.contains("out of step"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_during_preprocessed_op_takes_the_lane_out_of_service() {
    let cluster = LocalCluster::start(&small_config(Duration::from_millis(800)))
        .await
        .expect("link");
    for e in &cluster.engines {
        e.warm().await.expect("warm");
    }
    let [e0, e1, e2] = &cluster.engines;
    let x = shares(1);
    async fn tag(e: &Engine, id: u64, x: &ShareVec) -> SmcResult<Vec<u32>> {
        let mut s = e.session(0, id).await?;
        let key = s.gen_prf_key();
        s.prf_tag(&key, x).await
    }
    // P2 never joins: P0 and P1 have taken random squares that P2 has not,
    // so their pools no longer line up with P2's.
    let (r0, r1) = tokio::join!(tag(e0, 1, &x[0]), tag(e1, 1, &x[1]));
    assert!(r0.is_err() && r1.is_err(), "{r0:?} {r1:?}");
    assert!(!e0.is_healthy() && !e1.is_healthy());
    assert!(e2.is_healthy(), "P2 took nothing and stays in step");
    // Further sessions are refused with a clear error, never computed on
    // misaligned material.
    match e0.session(0, 2).await.err() {
        Some(SmcError::Desynchronised { reason, .. }) => {
            assert!(reason.contains("preprocessed"), "{reason}")
        }
        other => panic!("expected Desynchronised, got {other:?}"),
    }
}
