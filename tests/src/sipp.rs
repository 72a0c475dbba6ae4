//! Runs `sipp` (SIPp 3.6, Debian package `sip-tester`) as a child process
//! with the scenarios in `tests/sipp/`: always with a global timeout that
//! counts as failure, traces of errors and statistics in a folder of its
//! own, and a kill when the harness deadline passes, so a run never hangs
//! a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `tests/sipp/NAME`: a scenario or injection file.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// The sipp executable (`SIPP` overrides), or a panic that says how to
/// install it.
pub fn sipp_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPP").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("sipp"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("sipp not found in PATH (or SIPP): apt-get install -y sip-tester")
    })
}

/// Final counters of a run, from sipp's statistics file (`-trace_stat`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls that ran to the end of the scenario.
    pub successful: u64,
    /// Calls that failed (unexpected message, timeout, check failed).
    pub failed: u64,
    /// Calls created (outgoing for a client scenario, incoming for a
    /// server one).
    pub created: u64,
}

impl Stats {
    /// The cumulative counters of the last line of a `-trace_stat` file
    /// (`;`-separated, named in the header line).
    pub fn parse(csv: &str) -> Option<Stats> {
        let lines: Vec<&str> = csv.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() < 2 {
            return None;
        }
        let header: Vec<&str> = lines[0].split(';').collect();
        let last: Vec<&str> = lines[lines.len() - 1].split(';').collect();
        let get = |name: &str| -> Option<u64> {
            let i = header.iter().position(|h| h.trim() == name)?;
            last.get(i)?.trim().parse().ok()
        };
        Some(Stats {
            successful: get("SuccessfulCall(C)")?,
            failed: get("FailedCall(C)")?,
            created: get("TotalCallCreated").unwrap_or(0),
        })
    }
}

/// What one sipp run did.
#[derive(Debug)]
pub struct SippRun {
    /// sipp's exit code: 0 all calls successful, 1 at least one failed,
    /// 97 exit on internal command, 99 normal exit without calls, 255
    /// fatal error (e.g. the global timeout with `-timeout_error`); -1
    /// killed by the harness deadline.
    pub code: i32,
    /// Killed because the harness deadline passed.
    pub killed: bool,
    /// The final statistics, if sipp wrote them.
    pub stats: Option<Stats>,
    /// sipp's error trace (`-trace_err`): why calls failed.
    pub errors: String,
    /// The screen sipp printed at the end (stdout).
    pub screen: String,
    /// The folder the run's traces are in.
    pub dir: PathBuf,
}

impl SippRun {
    /// Exit 0 with `calls` successful calls and none failed.
    pub fn all_ok(&self, calls: u64) -> bool {
        self.code == 0
            && self
                .stats
                .as_ref()
                .is_some_and(|s| s.successful == calls && s.failed == 0)
    }

    /// A report for an assertion message.
    pub fn explain(&self) -> String {
        format!(
            "sipp exit {}{}, stats {:?}\n--- errors ---\n{}\n--- screen ---\n{}",
            self.code,
            if self.killed {
                " (killed at the deadline)"
            } else {
                ""
            },
            self.stats,
            tail(&self.errors, 60),
            tail(&self.screen, 40),
        )
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A sipp process: a scenario, its arguments, a folder for its traces.
pub struct Sipp {
    child: Child,
    dir: tempfile::TempDir,
    name: String,
    deadline: Instant,
}

/// Command-line arguments common to every run: no keyboard, a global
/// timeout that fails the run, error and statistics traces, and a
/// statistics line each second (the last one holds the final counters).
fn base_args(timeout: Duration, stat: &Path) -> Vec<String> {
    let secs = timeout.as_secs().max(1);
    vec![
        "-nostdin".into(),
        "-timeout".into(),
        format!("{secs}s"),
        "-timeout_error".into(),
        "-trace_err".into(),
        "-trace_stat".into(),
        "-stf".into(),
        stat.display().to_string(),
        "-fd".into(),
        "1".into(),
        // The pause before BYE in uac_call.xml unless the caller says, and
        // a late 180 or retransmitted 200 during it is no failure.
        "-d".into(),
        "100".into(),
        "-pause_msg_ign".into(),
    ]
}

impl Sipp {
    /// Starts `sipp -sf tests/sipp/SCENARIO ARGS...` (ARGS after the common
    /// ones, so they may override `-d`); sipp's own `-timeout` is
    /// `timeout`, and the harness kills it `timeout` + 10 s after start.
    pub fn spawn(scenario_name: &str, args: &[String], timeout: Duration) -> Sipp {
        let dir = tempfile::tempdir().expect("tempdir for sipp");
        let stat = dir.path().join("stat.csv");
        let mut all = vec![
            "-sf".to_string(),
            scenario(scenario_name).display().to_string(),
        ];
        all.extend(base_args(timeout, &stat));
        all.extend(args.iter().cloned());
        let child = Command::new(sipp_bin())
            .args(&all)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("screen.txt")).expect("sipp screen file"))
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sipp {all:?}: {e}"));
        Sipp {
            child,
            dir,
            name: scenario_name.to_string(),
            deadline: Instant::now() + timeout + Duration::from_secs(10),
        }
    }

    /// Runs to the end (see [`Sipp::spawn`]).
    pub fn run(scenario_name: &str, args: &[String], timeout: Duration) -> SippRun {
        Sipp::spawn(scenario_name, args, timeout).wait()
    }

    /// Waits for the end (killing sipp at the deadline) and collects the
    /// traces. The trace folder is kept (its path is in the result) when
    /// the run failed.
    pub fn wait(mut self) -> SippRun {
        let (code, killed) = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break (status.code().unwrap_or(-1), false),
                Ok(None) if Instant::now() >= self.deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break (-1, true);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for sipp {}: {e}", self.name),
            }
        };
        let read = |suffix: &str| -> String {
            std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let stats = std::fs::read_to_string(self.dir.path().join("stat.csv"))
            .ok()
            .and_then(|s| Stats::parse(&s));
        let errors = read("_errors.log");
        let screen =
            std::fs::read_to_string(self.dir.path().join("screen.txt")).unwrap_or_default();
        let ok = code == 0;
        let dir = if ok {
            self.dir.path().to_path_buf()
        } else {
            // Keep the traces of a failed run for whoever debugs it.
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            dir.keep()
        };
        SippRun {
            code,
            killed,
            stats,
            errors,
            screen,
            dir,
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One user line of an injection file: `user;domain;[authentication ...]`
/// (sipp 3.6 cannot nest `[fieldN]` inside `[authentication]`, so the whole
/// keyword is the field).
pub fn user_line(user: &str, domain: &str, password: &str) -> String {
    format!("{user};{domain};[authentication username={user} password={password}]")
}

/// Writes an injection file (`SEQUENTIAL` and `lines`) into `dir`.
pub fn inject(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut s = String::from("SEQUENTIAL\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    std::fs::write(&path, s).expect("write injection file");
    path
}

/// Transport for sipp's `-t`: UDP on one socket (`u1`) or TCP on one
/// connection (`t1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `-t u1`.
    Udp,
    /// `-t t1`.
    Tcp,
}

impl Transport {
    /// sipp's `-t` value.
    pub fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// Arguments for a run against `target` from local port `port` (so a
/// callee's registered Contact is where its UAS listens): `-i 127.0.0.1
/// -p PORT -t T -inf FILE -auth_uri URI -m CALLS TARGET`.
pub fn args(
    target: SocketAddr,
    port: u16,
    transport: Transport,
    inf: &Path,
    auth_uri: &str,
    calls: u64,
) -> Vec<String> {
    vec![
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        transport.flag().into(),
        "-inf".into(),
        inf.display().to_string(),
        "-auth_uri".into(),
        auth_uri.into(),
        "-m".into(),
        calls.to_string(),
        target.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_counters_come_from_the_last_line() {
        let csv = "StartTime;LastResetTime;CurrentTime;TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
                   a;b;c;1;0;0;0;0;\n\
                   a;b;c;3;1;2;0;1;\n";
        assert_eq!(
            Stats::parse(csv),
            Some(Stats {
                successful: 2,
                failed: 1,
                created: 3
            })
        );
        assert_eq!(Stats::parse("StartTime;\n"), None);
    }

    #[test]
    fn scenarios_exist() {
        for s in [
            "register.xml",
            "register_refused.xml",
            "uas.xml",
            "uas_cancel.xml",
            "uas_registered.xml",
            "uac_call.xml",
            "uac_cancel.xml",
            "uac_redirect.xml",
            "uac_404.xml",
        ] {
            assert!(scenario(s).is_file(), "{s}");
        }
    }
}
