use sharecall_proto::control::{PhaseResult, Status};

use super::fast_path::{is_decision, LinkCache};
use super::Gateway;

fn result(peer: u32, status: Status, epoch: u64, healthy: bool) -> PhaseResult {
    PhaseResult {
        peer,
        status: status as i32,
        link_epoch: epoch,
        link_healthy: healthy,
        ..PhaseResult::default()
    }
}

fn all(status: Status, epoch: u64) -> Vec<PhaseResult> {
    (0..3).map(|p| result(p, status, epoch, true)).collect()
}

#[test]
fn link_cache_learns_from_successes_at_one_healthy_epoch() {
    let cache = LinkCache::default();
    assert_eq!(cache.get(), None, "unknown at first");
    cache.observe(&all(Status::Success, 4));
    assert_eq!(cache.get(), Some(4));
    // A later link is picked up.
    cache.observe(&all(Status::Success, 5));
    assert_eq!(cache.get(), Some(5));
}

#[test]
fn link_cache_forgets_on_link_trouble() {
    let cache = LinkCache::default();
    cache.observe(&all(Status::Success, 4));
    // One peer unhealthy.
    let mut r = all(Status::Success, 4);
    r[1].link_healthy = false;
    cache.observe(&r);
    assert_eq!(cache.get(), None);

    cache.observe(&all(Status::Success, 4));
    // Peers at different epochs.
    let mut r = all(Status::Success, 4);
    r[2].link_epoch = 5;
    cache.observe(&r);
    assert_eq!(cache.get(), None);

    cache.observe(&all(Status::Success, 4));
    // A peer that did not answer reports no link at all.
    let mut r = all(Status::Success, 4);
    r[0] = result(0, Status::StreamErr, 0, false);
    cache.observe(&r);
    assert_eq!(cache.get(), None);

    cache.observe(&all(Status::Success, 4));
    cache.forget();
    assert_eq!(cache.get(), None);
}

#[test]
fn link_cache_ignores_failures_that_say_nothing_about_the_link() {
    let cache = LinkCache::default();
    // Not learnt from a failed phase, even at one healthy epoch...
    let mut r = all(Status::Success, 4);
    r[2].status = Status::Denied as i32;
    cache.observe(&r);
    assert_eq!(cache.get(), None);
    // ... and not forgotten because of one either.
    cache.observe(&all(Status::Success, 4));
    cache.observe(&r);
    assert_eq!(cache.get(), Some(4));
}

#[test]
fn decisions_are_refusals_not_glitches() {
    for s in [Status::Denied, Status::BadRequest, Status::UnknownCmd] {
        assert!(is_decision(s), "{s:?}");
    }
    for s in [
        Status::Success,
        Status::UnknownJob,
        Status::Aborted,
        Status::StreamErr,
        Status::Timeout,
        Status::LinkFailed,
    ] {
        assert!(!is_decision(s), "{s:?}");
    }
}

#[test]
fn agreed_output_names_the_disagreeing_peer() {
    let mut r = all(Status::Success, 1);
    for x in &mut r {
        x.output = b"42".to_vec();
    }
    assert_eq!(
        Gateway::agreed_output(7, &r).expect("agree"),
        b"42".to_vec()
    );
    r[1].output = b"43".to_vec();
    let e = Gateway::agreed_output(7, &r).expect_err("disagree");
    assert_eq!((e.peer, e.status), (Some(1), Status::Aborted));
}
