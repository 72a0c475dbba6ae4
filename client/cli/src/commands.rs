//! The account and registration subcommands of `sharecall`: `keygen`,
//! `enroll`, `register`, `resolve`, `update`, `delete`.
//!
//! Output is a few lines of text, or one JSON object on stdout with
//! `--json`. Exit status: 0 success; 1 error (bad input, missing key,
//! unreachable or misbehaving provider); 2 usage error; 3 the request
//! executed with a negative result (`not_found`, `exists`, `forbidden`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::OsRng;
use serde_json::{json, Value};
use sharecall_client::account::AccountKey;
use sharecall_client::client::{parse_provider_list, Client, Degraded, EnrollStatus, Outcome};
use sharecall_client::parts::{check_extra, ttl_seconds, ResultCode};
use sharecall_client::Error;
use sharecall_proto::encoding::{Endpoint, Pseudonym};

/// Exit status of a request that executed with a negative result.
const EXIT_NEGATIVE: u8 = 3;

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 3600s, 90m or 1h)"))
}

/// Where the account key is kept.
#[derive(clap::Args)]
pub struct KeyArg {
    /// Account key file [default: ~/.config/sharecall/account.key].
    #[arg(long, env = "SHARECALL_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
}

impl KeyArg {
    fn path(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.key {
            return Ok(p.clone());
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Ok(PathBuf::from(home).join(".config/sharecall/account.key")),
            None => Err("HOME is not set; pass --key FILE or set SHARECALL_KEY".into()),
        }
    }
}

/// Options of every subcommand that talks to the providers.
#[derive(clap::Args)]
pub struct Common {
    /// The three providers' base URLs in order P0,P1,P2, each
    /// `https://HOST:PORT#sha256=FINGERPRINT` (pinned to the fingerprint
    /// `sharecall-provider fingerprint` prints) or `https://HOST:PORT`
    /// (a CA-issued certificate, checked against the system's roots).
    #[arg(long, env = "SHARECALL_PROVIDERS", value_name = "URL,URL,URL")]
    providers: Option<String>,
    /// Allow plain `http://` provider URLs. INSECURE: anyone on the path
    /// reads every share and request id. Only for tests or a
    /// TLS-terminating proxy on the same host.
    #[arg(long)]
    insecure_plain_http: bool,
    #[command(flatten)]
    key: KeyArg,
    /// Longest time to wait for the providers (polling and retries
    /// included).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// How long the providers wait for all three parts of a request
    /// (100ms to 10m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    window: Duration,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Fail a resolution that only two providers answered (twice), since
    /// then not every endpoint share could be checked.
    #[arg(long)]
    refuse_degraded: bool,
}

impl Common {
    fn client(&self) -> Result<Client, String> {
        let path = self.key.path()?;
        let key = AccountKey::load(&path).map_err(|e| e.to_string())?;
        if let Some(w) = AccountKey::permissions_warning(&path) {
            eprintln!("warning: {w}");
        }
        let Some(list) = self.providers.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Err(
                "no provider URLs: pass --providers URL,URL,URL or set SHARECALL_PROVIDERS".into(),
            );
        };
        let urls = parse_provider_list(list).map_err(|e| e.to_string())?;
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        Client::new(&urls, key)
            .map(|c| {
                if self.insecure_plain_http {
                    eprintln!("warning: --insecure-plain-http: plain HTTP URLs are used as given");
                    c.allow_plain_http()
                } else {
                    c
                }
            })
            .and_then(|c| c.with_window_ms(window_ms))
            .map(|c| {
                c.with_timeout(self.timeout)
                    .with_refuse_degraded(self.refuse_degraded)
            })
            .map_err(|e| e.to_string())
    }
}

/// Options of `sharecall keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Replace an existing key file (the old account is lost).
    #[arg(long)]
    force: bool,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `sharecall enroll`.
#[derive(clap::Args)]
pub struct EnrollArgs {
    /// Enrollment token, if the providers require one.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Options of `sharecall register` and `sharecall update`.
#[derive(clap::Args)]
pub struct EntryArgs {
    /// Phone number in international form (+49 30 1234567) or SIP name.
    pseudonym: String,
    /// Contact URI or host:port (at most 308 bytes).
    endpoint: String,
    /// How long the registration lives (1s to 365d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
    /// Extra data stored with the entry (at most 1024 bytes; the providers
    /// see it in plain text).
    #[arg(long, value_name = "TEXT")]
    extra: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Options of `sharecall resolve` and `sharecall delete`.
#[derive(clap::Args)]
pub struct PseudonymArgs {
    /// Phone number in international form (+49 30 1234567) or SIP name.
    pseudonym: String,
    #[command(flatten)]
    common: Common,
}

/// A failed command: its message, and the request and provider it concerns.
struct Failure {
    message: String,
    provider: Option<String>,
    request_id: Option<String>,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            provider: None,
            request_id: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let request_id = match &e {
            Error::Failed { request_id, .. }
            | Error::Disagreement { request_id, .. }
            | Error::Reconstruct { request_id, .. }
            | Error::ReconstructTwo { request_id, .. }
            | Error::Degraded { request_id, .. } => Some(request_id.clone()),
            _ => None,
        };
        Failure {
            provider: e.blamed().map(|p| p.to_string()),
            request_id,
            message: e.to_string(),
        }
    }
}

/// Prints a command's result: `value` as JSON or `text` lines, and turns
/// a failure into a message and exit status 1.
fn finish(json: bool, result: Result<(Value, String, ExitCode), Failure>) -> ExitCode {
    match result {
        Ok((value, text, code)) => {
            if json {
                println!("{value}");
            } else {
                print!("{text}");
            }
            code
        }
        Err(f) => {
            eprintln!("error: {}", f.message);
            if json {
                println!(
                    "{}",
                    json!({"error": {
                        "message": f.message,
                        "provider": f.provider,
                        "request_id": f.request_id,
                    }})
                );
            }
            ExitCode::FAILURE
        }
    }
}

fn parse_pseudonym(s: &str) -> Result<Pseudonym, Failure> {
    Pseudonym::parse(s).map_err(|e| Failure::from(format!("bad pseudonym: {e}")))
}

fn parse_endpoint(s: &str) -> Result<Endpoint, Failure> {
    Endpoint::parse(s).map_err(|e| Failure::from(format!("bad endpoint: {e}")))
}

fn degraded_json(d: &Option<Degraded>) -> Value {
    match d {
        None => Value::Null,
        Some(d) => json!({
            "missing": d.missing.to_string(),
            "reason": d.reason.to_string(),
            "from": d.from.map(|p| p.to_string()),
            "unchecked_components": d.unchecked,
            "retried_from": d.retried_from,
        }),
    }
}

/// Says on stderr (so stdout stays the answer) that only two providers
/// answered.
fn warn_degraded(d: &Option<Degraded>) {
    if let Some(d) = d {
        eprintln!("warning: {d}");
    }
}

/// `sharecall keygen`.
pub fn keygen(args: &KeygenArgs) -> ExitCode {
    let result = (|| -> Result<_, String> {
        let path = args.key.path()?;
        let key = AccountKey::generate(&mut OsRng);
        key.save(&path, args.force).map_err(|e| e.to_string())?;
        let account = key.account_hex();
        Ok((
            json!({"key_file": path.display().to_string(), "account": account}),
            format!(
                "wrote a new account key to {} (mode 0600)\naccount {account}\n\
                 next: sharecall enroll, to enroll it with the providers\n",
                path.display()
            ),
            ExitCode::SUCCESS,
        ))
    })()
    .map_err(Failure::from);
    finish(args.json, result)
}

/// `sharecall enroll`.
pub async fn enroll(args: EnrollArgs) -> ExitCode {
    let result = async {
        let client = args.common.client()?;
        let statuses = client.enroll(args.token.as_deref()).await?;
        let mut text = format!("account {}\n", client.account().account_hex());
        let mut providers = Vec::new();
        for ((i, status), url) in statuses.iter().enumerate().zip(client.providers()) {
            let (word, label) = match status {
                EnrollStatus::Enrolled => ("enrolled", "enrolled"),
                EnrollStatus::AlreadyEnrolled => ("already_enrolled", "already enrolled"),
            };
            text.push_str(&format!("  P{i} {url}: {label}\n"));
            providers.push(json!({"provider": format!("P{i}"), "url": url, "status": word}));
        }
        Ok::<_, Failure>((
            json!({"account": client.account().account_hex(), "providers": providers}),
            text,
            ExitCode::SUCCESS,
        ))
    }
    .await;
    finish(args.common.json, result)
}

/// Which of `register` / `update` to run.
#[derive(Clone, Copy)]
pub enum EntryKind {
    /// `sharecall register`.
    Register,
    /// `sharecall update`.
    Update,
}

/// `sharecall register` and `sharecall update`.
pub async fn entry(kind: EntryKind, args: EntryArgs) -> ExitCode {
    let result = async {
        let pseudonym = parse_pseudonym(&args.pseudonym)?;
        let endpoint = parse_endpoint(&args.endpoint)?;
        let ttl_s = ttl_seconds(args.ttl).map_err(|e| Failure::from(e.to_string()))?;
        let extra = args.extra.as_deref().map(str::as_bytes);
        if let Some(x) = extra {
            check_extra(x).map_err(|e| Failure::from(e.to_string()))?;
        }
        let client = args.common.client()?;
        let ttl = Duration::from_secs(ttl_s);
        let (verb, out) = match kind {
            EntryKind::Register => (
                "register",
                client.register(&pseudonym, &endpoint, ttl, extra).await?,
            ),
            EntryKind::Update => (
                "update",
                client.update(&pseudonym, &endpoint, ttl, extra).await?,
            ),
        };
        let Outcome {
            request_id,
            code,
            degraded,
        } = out;
        let ttl_text = humantime::format_duration(ttl).to_string();
        let mut text = match (kind, code) {
            (EntryKind::Register, ResultCode::Ok) => {
                format!("registered {pseudonym} -> {endpoint} for {ttl_text}\n")
            }
            (EntryKind::Update, ResultCode::Ok) => {
                format!("updated {pseudonym} -> {endpoint} for {ttl_text}\n")
            }
            (_, c) => negative_text(&pseudonym, c),
        };
        text.push_str(&format!("  request {request_id}\n"));
        warn_degraded(&degraded);
        Ok::<_, Failure>((
            json!({
                "request_id": request_id,
                "kind": verb,
                "pseudonym": pseudonym.as_str(),
                "endpoint": endpoint.as_str(),
                "ttl_s": ttl_s,
                "code": code.as_str(),
                "degraded": degraded_json(&degraded),
            }),
            text,
            exit_for(code),
        ))
    }
    .await;
    finish(args.common.json, result)
}

fn negative_text(pseudonym: &Pseudonym, code: ResultCode) -> String {
    match code {
        ResultCode::NotFound => format!("{pseudonym} is not registered\n"),
        ResultCode::Exists => format!("{pseudonym} is already registered\n"),
        ResultCode::Forbidden => {
            format!("{pseudonym} is registered by another account; not changed\n")
        }
        c => format!("{pseudonym}: {c}\n"),
    }
}

fn exit_for(code: ResultCode) -> ExitCode {
    if code == ResultCode::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NEGATIVE)
    }
}

/// `sharecall resolve`.
pub async fn resolve(args: PseudonymArgs) -> ExitCode {
    let result = async {
        let pseudonym = parse_pseudonym(&args.pseudonym)?;
        let client = args.common.client()?;
        let r = client.resolve(&pseudonym).await?;
        let endpoint = r.endpoint.as_ref().map(|e| e.as_str().to_owned());
        let extra_text = r
            .extra
            .as_ref()
            .and_then(|x| std::str::from_utf8(x).ok().map(str::to_owned));
        let mut text = match &endpoint {
            Some(e) if r.code == ResultCode::Ok => format!("{pseudonym} -> {e}\n"),
            _ => negative_text(&pseudonym, r.code),
        };
        if let Some(ms) = r.expires_at_ms {
            let at = UNIX_EPOCH + Duration::from_millis(ms);
            text.push_str(&format!(
                "  expires {}\n",
                humantime::format_rfc3339_seconds(at)
            ));
        }
        match (&r.extra, &extra_text) {
            (_, Some(t)) => text.push_str(&format!("  extra {t:?}\n")),
            (Some(x), None) => text.push_str(&format!("  extra (hex) {}\n", hex::encode(x))),
            _ => {}
        }
        text.push_str(&format!("  request {}\n", r.request_id));
        if let Some(d) = &r.degraded {
            // On stdout too: this answer is not fully checked.
            text.push_str(&format!("  DEGRADED: {d}\n"));
        }
        warn_degraded(&r.degraded);
        Ok::<_, Failure>((
            json!({
                "request_id": r.request_id,
                "kind": "resolve",
                "pseudonym": pseudonym.as_str(),
                "code": r.code.as_str(),
                "endpoint": endpoint,
                "extra": extra_text,
                "extra_hex": r.extra.as_ref().map(hex::encode),
                "expires_at_ms": r.expires_at_ms,
                "degraded": degraded_json(&r.degraded),
            }),
            text,
            exit_for(r.code),
        ))
    }
    .await;
    finish(args.common.json, result)
}

/// `sharecall delete`.
pub async fn delete(args: PseudonymArgs) -> ExitCode {
    let result = async {
        let pseudonym = parse_pseudonym(&args.pseudonym)?;
        let client = args.common.client()?;
        let Outcome {
            request_id,
            code,
            degraded,
        } = client.delete(&pseudonym).await?;
        let mut text = match code {
            ResultCode::Ok => format!("deleted {pseudonym}\n"),
            c => negative_text(&pseudonym, c),
        };
        text.push_str(&format!("  request {request_id}\n"));
        warn_degraded(&degraded);
        Ok::<_, Failure>((
            json!({
                "request_id": request_id,
                "kind": "delete",
                "pseudonym": pseudonym.as_str(),
                "code": code.as_str(),
                "degraded": degraded_json(&degraded),
            }),
            text,
            exit_for(code),
        ))
    }
    .await;
    finish(args.common.json, result)
}

/// Options of `sharecall import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// CSV file with the columns pseudonym,endpoint,ttl,owner (header line
    /// optional; empty ttl → --ttl-default, empty owner → this account).
    file: PathBuf,
    /// Rows per import request (1 to 2048).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=2048))]
    chunk: u64,
    /// Where to keep the position for resuming [default: <FILE>.import-state].
    #[arg(long, value_name = "PATH")]
    resume_file: Option<PathBuf>,
    /// Lifetime in seconds of rows with an empty ttl.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    ttl_default: u64,
    /// How often a chunk is sent again (the same signed request) after a
    /// transient failure.
    #[arg(long, value_name = "N", default_value_t = 3)]
    retries: u32,
    /// Send rows sorted by key (faster for a tree deployment only; in a
    /// hash or list deployment it tells the providers the rows' key
    /// order, so rows are shuffled unless this is given).
    #[arg(long)]
    sorted_for_tree: bool,
    #[command(flatten)]
    common: Common,
}

/// Whether sending the same signed request again may help.
fn transient(e: &Error) -> bool {
    use sharecall_client::ProviderError as P;
    match e {
        Error::Failed { failures, .. } => failures.iter().all(|f| {
            matches!(
                f.error,
                P::Unreachable { .. } | P::Timeout { .. } | P::Cancelled { .. }
            ) || matches!(f.error, P::Refused { status, .. } if status >= 500)
        }),
        _ => false,
    }
}

/// `sharecall import`.
pub async fn import(args: ImportArgs) -> ExitCode {
    use sharecall_client::import::{default_resume_path, parse_csv, Fingerprint, ResumeState};
    let json_out = args.common.json;
    let result = async {
        let order = if args.sorted_for_tree {
            sharecall_client::import::ImportOrder::SortedForTree
        } else {
            sharecall_client::import::ImportOrder::Shuffled
        };
        let client = args.common.client()?.with_import_order(order);
        let ttl_default = Duration::from_secs(args.ttl_default);
        ttl_seconds(ttl_default).map_err(|e| Failure::from(format!("--ttl-default: {e}")))?;
        let bytes = std::fs::read(&args.file)
            .map_err(|e| Failure::from(format!("cannot read {}: {e}", args.file.display())))?;
        let fingerprint = Fingerprint::of(&bytes);
        let resume_path = args
            .resume_file
            .clone()
            .unwrap_or_else(|| default_resume_path(&args.file));
        let mut state = ResumeState::load_for(&resume_path, &fingerprint)
            .map_err(|e| Failure::from(e.to_string()))?;
        let rows = parse_csv(&bytes, ttl_default, client.account().public_key()).map_err(
            |e| Failure::from(format!("{}: {e}\nnothing was sent for these rows", args.file.display())),
        )?;
        let total = rows.len() as u64;
        let resumed_from = state.next_row.min(total);
        let started = std::time::Instant::now();
        let (mut imported, mut skipped, mut chunks, mut sent) = (0u64, 0u64, 0u64, 0u64);
        let bar = if json_out {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            )
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} rows ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(resumed_from);
        let chunk = usize::try_from(args.chunk).unwrap_or(1000);
        let start = usize::try_from(resumed_from).unwrap_or(usize::MAX);
        let mut degraded = None;
        for batch in rows.get(start..).unwrap_or_default().chunks(chunk) {
            let import_rows: Vec<_> = batch.iter().map(|r| r.row.clone()).collect();
            let first_line = batch.first().map_or(0, |r| r.line);
            let last_line = batch.last().map_or(0, |r| r.line);
            let request = client.prepare_import(&import_rows).map_err(|e| {
                Failure::from(format!(
                    "rows on lines {first_line}-{last_line}: {e}; nothing was sent for them"
                ))
            })?;
            let mut attempt = 0;
            let submission = loop {
                match client.send(&request).await {
                    Ok(s) => break s,
                    Err(e) if attempt < args.retries && transient(&e) => {
                        attempt += 1;
                        bar.suspend(|| {
                            eprintln!(
                                "warning: lines {first_line}-{last_line} (request {}): {e}; \
                                 sending the same request again ({attempt}/{})",
                                request.request_id(),
                                args.retries
                            )
                        });
                    }
                    Err(e) => {
                        bar.abandon();
                        let mut f = Failure::from(e);
                        f.message = format!(
                            "{}\nrows from line {first_line} on are not acknowledged; \
                             run the same command again to resume",
                            f.message
                        );
                        return Err(f);
                    }
                }
            };
            let out = sharecall_client::client::import_outcome(submission)?;
            if out.code != ResultCode::Ok {
                bar.abandon();
                return Err(Failure {
                    message: format!(
                        "import of lines {first_line}-{last_line} answered {}",
                        out.code
                    ),
                    provider: None,
                    request_id: Some(out.request_id),
                });
            }
            if out.degraded.is_some() {
                bar.suspend(|| warn_degraded(&out.degraded));
                degraded = out.degraded.clone();
            }
            imported += out.imported;
            skipped += out.skipped;
            chunks += 1;
            sent += batch.len() as u64;
            state.next_row += batch.len() as u64;
            state.imported += out.imported;
            state.skipped += out.skipped;
            state.save(&resume_path).map_err(|e| Failure::from(e.to_string()))?;
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
        let mut text = if sent == 0 {
            format!(
                "nothing to send: all {total} rows of {} are already acknowledged (resume file {})\n",
                args.file.display(),
                resume_path.display()
            )
        } else {
            format!(
                "imported {imported}, skipped {skipped} (already registered) of {sent} rows \
                 in {chunks} request{} ({rate:.0} rows/s)\n",
                if chunks == 1 { "" } else { "s" }
            )
        };
        if resumed_from > 0 && sent > 0 {
            text.push_str(&format!("  resumed at row {}\n", resumed_from + 1));
        }
        text.push_str(&format!(
            "  all runs: imported {}, skipped {}; resume file {}\n",
            state.imported,
            state.skipped,
            resume_path.display()
        ));
        Ok::<_, Failure>((
            json!({
                "kind": "import",
                "file": args.file.display().to_string(),
                "rows": total,
                "resumed_from": resumed_from,
                "sent": sent,
                "requests": chunks,
                "imported": imported,
                "skipped": skipped,
                "total_imported": state.imported,
                "total_skipped": state.skipped,
                "elapsed_s": secs,
                "rows_per_s": rate,
                "resume_file": resume_path.display().to_string(),
                "degraded": degraded_json(&degraded),
            }),
            text,
            ExitCode::SUCCESS,
        ))
    }
    .await;
    finish(json_out, result)
}
