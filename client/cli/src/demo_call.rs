//! The SIP part of `sharecall demo`: two front ends for two domains on the
//! demo cluster, two user agents registering through them, and one call
//! from alice@a.example to bob@b.example placed through both.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::OsRng;
use sharecall_client::{AccountKey, Client, ResultCode};
use sharecall_frontend::aor::Aor;
use sharecall_frontend::config::Config;
use sharecall_frontend::server::Server;
use sharecall_frontend::ua::UserAgent;
use sharecall_proto::encoding::Pseudonym;

/// One front end of the demo.
struct FrontEnd {
    udp: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sharecall_frontend::server::ServerError>>,
}

/// Enrolls a fresh account key, saved at `path`, at the three providers.
async fn enrolled_key(urls: &[String], path: &Path) -> anyhow::Result<AccountKey> {
    let key = AccountKey::generate(&mut OsRng);
    key.save(path, false)
        .with_context(|| format!("saving {}", path.display()))?;
    Client::new(urls, key.clone())?
        .with_timeout(Duration::from_secs(20))
        .enroll(None)
        .await
        .context("enrolling a front-end account")?;
    Ok(key)
}

/// Writes the configuration of the front end for `domain` with one user
/// and starts it on free loopback ports.
async fn start_front_end(
    urls: &[String],
    dir: &Path,
    domain: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<FrontEnd> {
    std::fs::create_dir_all(dir).context("front-end folder")?;
    enrolled_key(urls, &dir.join("resolver.key")).await?;
    enrolled_key(urls, &dir.join(format!("{user}.key"))).await?;
    std::fs::write(
        dir.join("users.toml"),
        format!(
            "[[user]]\nname = \"{user}\"\ndomain = \"{domain}\"\npassword = \"{password}\"\naccount_key = \"{user}.key\"\n"
        ),
    )
    .context("users file")?;
    let providers: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        "[sip]\ndomains = [\"{domain}\"]\nusers = \"users.toml\"\n\n\
         [listen]\nudp = \"127.0.0.1:0\"\ntcp = \"off\"\n\n\
         [sharecall]\nproviders = [{}]\naccount_key = \"resolver.key\"\ntimeout = \"20s\"\n",
        providers.join(", ")
    );
    std::fs::write(dir.join("sip.toml"), &text).context("sip.toml")?;
    let config = Config::parse(&text, dir).context("front-end configuration")?;
    let server = Server::bind(config)
        .await
        .context("binding the front end")?;
    let udp = server
        .local_addrs()
        .udp
        .context("the front end opened no UDP socket")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_configured(async move {
        let _ = stopped.await;
    }));
    Ok(FrontEnd { udp, stop, task })
}

/// Runs the SIP part of the demo on the cluster at `urls`.
pub async fn run(urls: &[String], dir: &Path) -> anyhow::Result<()> {
    println!("\n== SIP: two front ends (a.example, b.example) on the same providers");
    let a = start_front_end(urls, &dir.join("fe-a"), "a.example", "alice", "alice-pw").await?;
    let b = start_front_end(urls, &dir.join("fe-b"), "b.example", "bob", "bob-pw").await?;
    println!("   front end A: udp {}   front end B: udp {}", a.udp, b.udp);
    let result = call(urls, dir, &a, &b).await;
    for fe in [a, b] {
        let _ = fe.stop.send(());
        match fe.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("front end stopped with: {e}"),
            Err(e) => tracing::warn!("front end task: {e}"),
        }
    }
    result
}

async fn call(urls: &[String], dir: &Path, a: &FrontEnd, b: &FrontEnd) -> anyhow::Result<()> {
    let any = "127.0.0.1:0".parse().context("loopback")?;
    let mut bob = UserAgent::bind(Aor::new("bob", "b.example"), "bob-pw", b.udp, any).await?;
    let mut alice = UserAgent::bind(Aor::new("alice", "a.example"), "alice-pw", a.udp, any).await?;
    for (ua, name, fe) in [
        (&mut bob, "bob@b.example", "B"),
        (&mut alice, "alice@a.example", "A"),
    ] {
        let t = Instant::now();
        let contacts = ua
            .register(600)
            .await
            .with_context(|| format!("registering {name}"))?;
        println!(
            "   REGISTER {name:<16} via front end {fe}: 401 challenge, then 200 ({:.0} ms), binding {}",
            t.elapsed().as_secs_f64() * 1e3,
            contacts.join(", ")
        );
    }

    // What the providers hold for bob: the front end's routing URI, not
    // bob's Contact. Any enrolled account may resolve it.
    let key = AccountKey::load(&dir.join("fe-a/resolver.key"))?;
    let client = Client::new(urls, key)?.with_timeout(Duration::from_secs(20));
    let r = client.resolve(&Pseudonym::parse("bob@b.example")?).await?;
    match (r.code, r.endpoint) {
        (ResultCode::Ok, Some(e)) => println!(
            "   sharecall holds for bob@b.example: {} (front end B's routing token; bob's Contact {} stays at B)",
            e.as_str(),
            bob.contact()
        ),
        (code, _) => anyhow::bail!("bob@b.example resolved to {}", code.as_str()),
    }

    let answer = tokio::spawn(async move { bob.answer(Duration::from_secs(30)).await });
    let report = alice
        .call("sip:bob@b.example")
        .await
        .context("alice calling bob")?;
    let answered = answer.await.context("bob's task")??;
    println!(
        "   INVITE sip:bob@b.example from alice: 407 challenge, then {} and 200 OK; \
         INVITE → 200 {:.0} ms (resolution by SMC included)",
        report
            .provisional
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join("/"),
        report.routed.as_secs_f64() * 1e3
    );
    println!(
        "   bob's phone rang with Request-URI {}; ACK and BYE went through both front ends (Record-Route)",
        answered.request_uri
    );
    Ok(())
}
