//! `sharecall demo` end to end: three providers linked over TLS, a
//! registration, its resolution through SMC and the client-side
//! reconstruction, and a call through two SIP front ends.

use sharecall_tests::{run, text};

#[test]
fn demo_registers_and_resolves() {
    let out = run("sharecall", &["demo"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // A number written in another form resolves to its registration.
    assert!(
        stdout.contains("resolved +49301234567 -> sip:alice@192.0.2.10:5060"),
        "{stdout}"
    );
    assert!(
        stdout.contains("resolved bob@example.org -> sip:bob@198.51.100.7:5062;transport=tcp"),
        "{stdout}"
    );
    assert!(stdout.contains("not registered (+15550100)"), "{stdout}");
    // Update and delete through the same path.
    assert!(
        stdout.contains("resolved +49301234567 -> sip:alice@203.0.113.44:5070"),
        "{stdout}"
    );
    assert!(stdout.contains("delete: ok"), "{stdout}");
    assert!(stdout.contains("not registered (+49301234567)"), "{stdout}");
    // Exactly one answer per query: no false matches.
    assert_eq!(stdout.matches("resolved ").count(), 3, "{stdout}");
    // The SIP part: two front ends, two registrations, one call through
    // both, and sharecall holding front end B's routing URI for bob.
    assert!(stdout.contains("REGISTER bob@b.example"), "{stdout}");
    assert!(stdout.contains("REGISTER alice@a.example"), "{stdout}");
    assert!(
        stdout.contains("sharecall holds for bob@b.example: sip:fe-"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "INVITE sip:bob@b.example from alice: 407 challenge, then 100/180 and 200 OK"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("bob's phone rang"), "{stdout}");
    // What the providers stored: two sample entries each (one was
    // deleted) and the two SIP users, and nothing of the plaintext.
    let (_, stored) = stdout
        .split_once("== what each provider stored")
        .expect("stored section");
    assert_eq!(stored.matches(": 4 entries").count(), 3, "{stored}");
    for plain in ["bob", "198.51.100.7", "carol", "2001:db8", "4420794"] {
        assert!(!stored.contains(plain), "{plain} in {stored}");
    }
}

#[test]
fn demo_resolves_what_it_is_given() {
    let out = run(
        "sharecall",
        &[
            "demo",
            "--register",
            "tel:+33 1 23 45 67 89=sip:dora@203.0.113.5:5070",
            "--register",
            "eve=sip:eve@203.0.113.6",
            "--resolve",
            "+33123456789",
            "--resolve",
            "EVE",
            "--resolve",
            "mallory",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("resolved +33123456789 -> sip:dora@203.0.113.5:5070"),
        "{stdout}"
    );
    assert!(
        stdout.contains("resolved eve -> sip:eve@203.0.113.6"),
        "{stdout}"
    );
    assert!(stdout.contains("not registered (mallory)"), "{stdout}");
}
