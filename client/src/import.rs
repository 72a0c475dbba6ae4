//! Bulk import from CSV (`sharecall import`): parsing the file into
//! [`ImportRow`]s and the resume state kept next to it.
//!
//! The CSV has the columns `pseudonym,endpoint,ttl,owner`; a header line is
//! optional (recognised by `pseudonym` in its first field). `ttl` is whole
//! seconds (or a duration such as `90m`) and may be empty for the default;
//! `owner` is the owning account's 64-hex public key and may be empty for
//! the importing account.
//!
//! The resume state records, after each acknowledged chunk, the next row to
//! send and the file's size and blake3 prefix, so a rerun on the same file
//! continues where the last one stopped and a rerun on a changed file is
//! refused.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sharecall_proto::encoding::{Endpoint, Pseudonym};

use crate::client::ImportRow;
use crate::parts::ttl_seconds;

/// The order of the rows inside one `import` request. Slots follow row
/// order, so in a hash or list deployment the providers would learn the
/// key order of the rows if they came sorted: there they are shuffled
/// (fresh, with `OsRng`, per request). Only a tree deployment profits from
/// sorted rows (its run check then compares neighbours only; another
/// order only slows the import down), and a tree reveals each key's rank
/// anyway. The table variant is the deployment's public configuration;
/// the client does not ask the providers for it, so no provider can make
/// a client sort for a hash table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImportOrder {
    /// Rows in a fresh random order per request (hash and list tables).
    #[default]
    Shuffled,
    /// Rows sorted by pseudonym key (tree tables only).
    SortedForTree,
}

impl ImportOrder {
    /// `rows` in this order (a shuffle draws from `rng`).
    pub fn arrange<'a, R: rand::RngCore + rand::CryptoRng>(
        self,
        rows: &'a [ImportRow],
        rng: &mut R,
    ) -> Vec<&'a ImportRow> {
        let mut out: Vec<&ImportRow> = rows.iter().collect();
        match self {
            ImportOrder::Shuffled => rand::seq::SliceRandom::shuffle(out.as_mut_slice(), rng),
            ImportOrder::SortedForTree => out.sort_by_key(|r| r.pseudonym.key()),
        }
        out
    }
}

/// Most bad rows listed in one [`CsvError`].
pub const MAX_REPORTED: usize = 20;

/// One bad line of the CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Why a CSV file cannot be imported: its bad lines (at most
/// [`MAX_REPORTED`]) and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(bad, *total))]
pub struct CsvError {
    /// The first bad lines.
    pub bad: Vec<BadLine>,
    /// How many lines are bad.
    pub total: usize,
}

fn describe(bad: &[BadLine], total: usize) -> String {
    let mut s = format!(
        "{total} bad row{} in the CSV file:",
        if total == 1 { "" } else { "s" }
    );
    for b in bad {
        s.push_str(&format!("\n  {b}"));
    }
    if total > bad.len() {
        s.push_str(&format!("\n  … and {} more", total - bad.len()));
    }
    s
}

/// One data row of the CSV with its line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    /// 1-based line number in the file.
    pub line: u64,
    /// The row, checked.
    pub row: ImportRow,
}

/// Parses a ttl field: empty → `default`; whole seconds (`3600`) or a
/// duration (`1h`); 1 s to 365 days.
fn parse_ttl(field: &str, default: Duration) -> Result<Duration, String> {
    let ttl = if field.is_empty() {
        default
    } else if let Ok(s) = field.parse::<u64>() {
        Duration::from_secs(s)
    } else {
        humantime::parse_duration(field)
            .map_err(|e| format!("bad ttl {field:?}: {e} (write seconds, e.g. 3600)"))?
    };
    ttl_seconds(ttl).map_err(|e| format!("bad ttl {field:?}: {e}"))?;
    Ok(ttl)
}

/// Parses an owner field: empty → `default`; else a 64-hex public key.
fn parse_owner(field: &str, default: [u8; 32]) -> Result<[u8; 32], String> {
    if field.is_empty() {
        return Ok(default);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(field, &mut out).map_err(|_| {
        format!(
            "bad owner {:?}: expected a 64-digit hex public key",
            crate::parts::clip(field, 80)
        )
    })?;
    Ok(out)
}

fn parse_record(
    rec: &csv::StringRecord,
    default_ttl: Duration,
    default_owner: [u8; 32],
) -> Result<ImportRow, String> {
    if rec.len() != 4 {
        return Err(format!(
            "expected 4 fields (pseudonym,endpoint,ttl,owner), found {}",
            rec.len()
        ));
    }
    let field = |i: usize| rec.get(i).unwrap_or("").trim();
    let pseudonym =
        Pseudonym::parse(field(0)).map_err(|e| format!("bad pseudonym {:?}: {e}", field(0)))?;
    let endpoint = Endpoint::parse(field(1))
        .map_err(|e| format!("bad endpoint {:?}: {e}", crate::parts::clip(field(1), 80)))?;
    Ok(ImportRow {
        pseudonym,
        endpoint,
        ttl: parse_ttl(field(2), default_ttl)?,
        owner: parse_owner(field(3), default_owner)?,
        extra: None,
    })
}

/// Parses a whole CSV file. Every bad line is counted (the first
/// [`MAX_REPORTED`] are listed) and nothing is returned if any is bad.
pub fn parse_csv(
    input: &[u8],
    default_ttl: Duration,
    default_owner: [u8; 32],
) -> Result<Vec<CsvRow>, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(None)
        .from_reader(input);
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut total = 0usize;
    let mut first = true;
    let mut record = csv::StringRecord::new();
    // Line numbers from byte offsets (the csv crate does not count blank
    // lines), counted incrementally.
    let (mut counted_to, mut newlines) = (0usize, 0u64);
    let mut line_at = |byte: u64| -> u64 {
        let mut byte = usize::try_from(byte).unwrap_or(usize::MAX).min(input.len());
        // A record's position may be before the blank lines skipped.
        while input.get(byte).is_some_and(|b| *b == b'\n' || *b == b'\r') {
            byte += 1;
        }
        if byte >= counted_to {
            newlines += input[counted_to..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = byte;
        }
        newlines + 1
    };
    loop {
        let read = reader.read_record(&mut record);
        let line = line_at(record.position().map_or(0, csv::Position::byte));
        match read {
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(line, |p| line_at(p.byte()));
                total += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(BadLine {
                        line,
                        reason: format!("not valid CSV: {e}"),
                    });
                }
                // An I/O error or bad UTF-8 cannot be read past reliably.
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
            Ok(true) => {}
        }
        let is_header = first
            && record
                .get(0)
                .is_some_and(|f| f.trim().eq_ignore_ascii_case("pseudonym"));
        first = false;
        if is_header {
            continue;
        }
        // A blank line is a record of one empty field: skip it.
        if record.len() == 1 && record.get(0).is_some_and(str::is_empty) {
            continue;
        }
        match parse_record(&record, default_ttl, default_owner) {
            Ok(row) => rows.push(CsvRow { line, row }),
            Err(reason) => {
                total += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(BadLine { line, reason });
                }
            }
        }
    }
    if total > 0 {
        return Err(CsvError { bad, total });
    }
    Ok(rows)
}

/// Size and blake3 (first 16 bytes, hex) of a file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Length in bytes.
    pub size: u64,
    /// The first 16 bytes of the blake3 hash, lowercase hex.
    pub blake3_prefix: String,
}

impl Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            size: bytes.len() as u64,
            blake3_prefix: hex::encode(&blake3::hash(bytes).as_bytes()[..16]),
        }
    }
}

/// Where an import stands: the next data row (0-based, header not
/// counted) to send, for the file with this fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    /// Size and blake3 prefix of the CSV file.
    pub file: Fingerprint,
    /// The next data row to send (all rows before it are acknowledged).
    pub next_row: u64,
    /// Rows imported so far, over all runs.
    pub imported: u64,
    /// Rows skipped so far, over all runs.
    pub skipped: u64,
}

/// Why the resume state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The state file cannot be read or written.
    #[error("resume file {}: {source}", path.display())]
    Io {
        /// The resume file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The state file is not a resume state.
    #[error("resume file {} is not a sharecall import state: {reason}", path.display())]
    Corrupt {
        /// The resume file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state is about another file (or the file changed).
    #[error(
        "resume file {} was written for a different file ({} bytes, blake3 {}…) \
         than this one ({} bytes, blake3 {}…); delete it to import from the start",
        path.display(), state.size, state.blake3_prefix, file.size, file.blake3_prefix
    )]
    Mismatch {
        /// The resume file.
        path: PathBuf,
        /// What the state records.
        state: Fingerprint,
        /// The file now.
        file: Fingerprint,
    },
}

/// The default resume file of `csv`: `<csv>.import-state`.
pub fn default_resume_path(csv: &Path) -> PathBuf {
    let mut s = csv.as_os_str().to_owned();
    s.push(".import-state");
    PathBuf::from(s)
}

impl ResumeState {
    /// A fresh state for the file with fingerprint `file`.
    pub fn start(file: Fingerprint) -> ResumeState {
        ResumeState {
            file,
            next_row: 0,
            imported: 0,
            skipped: 0,
        }
    }

    /// Reads the state at `path`; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<ResumeState>, ResumeError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ResumeError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ResumeError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Reads the state at `path` for the file with fingerprint `file`: a
    /// fresh state if there is none, an error if it is about another file.
    pub fn load_for(path: &Path, file: &Fingerprint) -> Result<ResumeState, ResumeError> {
        match ResumeState::load(path)? {
            None => Ok(ResumeState::start(file.clone())),
            Some(s) if s.file == *file => Ok(s),
            Some(s) => Err(ResumeError::Mismatch {
                path: path.to_owned(),
                state: s.file,
                file: file.clone(),
            }),
        }
    }

    /// Writes the state atomically: to a temporary file in the same
    /// directory, flushed, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), ResumeError> {
        let io = |source| ResumeError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".import-state")
            .tempfile_in(&dir)
            .map_err(io)?;
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        tmp.write_all(&bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: [u8; 32] = [7; 32];
    const TTL: Duration = Duration::from_secs(3600);

    fn parse(s: &str) -> Result<Vec<CsvRow>, CsvError> {
        parse_csv(s.as_bytes(), TTL, ME)
    }

    #[test]
    fn with_and_without_header() {
        let owner = hex::encode([9u8; 32]);
        let body = format!(
            "+49 30 1234567,sip:alice@192.0.2.10:5060,60,{owner}\n\
             bob,192.0.2.11:5060,,\n"
        );
        let plain = parse(&body).expect("no header");
        let headed = parse(&format!("pseudonym,endpoint,ttl,owner\n{body}")).expect("header");
        assert_eq!(plain.len(), 2);
        assert_eq!(headed.len(), 2);
        assert_eq!(plain[0].line, 1);
        assert_eq!(headed[0].line, 2);
        assert_eq!(plain[0].row, headed[0].row);
        assert_eq!(plain[0].row.ttl, Duration::from_secs(60));
        assert_eq!(plain[0].row.owner, [9; 32]);
        assert_eq!(plain[0].row.endpoint.as_str(), "sip:alice@192.0.2.10:5060");
        // Empty ttl and owner take the defaults.
        assert_eq!(plain[1].row.ttl, TTL);
        assert_eq!(plain[1].row.owner, ME);
        assert_eq!(plain[1].row.pseudonym, Pseudonym::parse("bob").expect("p"));
        // Blank lines and a header in any case are fine.
        let rows =
            parse("Pseudonym , Endpoint,TTL,Owner\n\nbob,192.0.2.11:5060,1h,\n").expect("parses");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 3);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse(
            "pseudonym,endpoint,ttl,owner\n\
             alice,192.0.2.10:5060,,\n\
             bob,192.0.2.11:5060,0,\n\
             carol,192.0.2.12:5060,,abcd\n\
             dave,192.0.2.13:5060\n\
             030 1234567,192.0.2.14:5060,,\n",
        )
        .expect_err("bad rows");
        assert_eq!(err.total, 4);
        let lines: Vec<u64> = err.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(err.bad[0].reason.contains("ttl"), "{err}");
        assert!(err.bad[1].reason.contains("owner"), "{err}");
        assert!(err.bad[2].reason.contains("expected 4 fields"), "{err}");
        assert!(err.bad[3].reason.contains("pseudonym"), "{err}");
        let text = err.to_string();
        assert!(text.contains("line 3:"), "{text}");
        assert!(text.starts_with("4 bad rows"), "{text}");
    }

    #[test]
    fn many_bad_lines_are_summarised() {
        let body: String = (0..30).map(|_| "x\n").collect();
        let err = parse(&body).expect_err("bad");
        assert_eq!(err.total, 30);
        assert_eq!(err.bad.len(), MAX_REPORTED);
        assert!(err.to_string().contains("and 10 more"));
    }

    #[test]
    fn resume_state_round_trips_and_detects_another_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.csv.import-state");
        let fp = Fingerprint::of(b"a,b,c,d\n");
        assert_eq!(fp.size, 8);
        assert_eq!(fp.blake3_prefix.len(), 32);
        // No state yet: start from row 0.
        assert_eq!(
            ResumeState::load_for(&path, &fp).expect("fresh"),
            ResumeState::start(fp.clone())
        );
        let mut st = ResumeState::start(fp.clone());
        st.next_row = 1000;
        st.imported = 990;
        st.skipped = 10;
        st.save(&path).expect("save");
        assert_eq!(ResumeState::load_for(&path, &fp).expect("load"), st);
        // Saving again replaces it (atomically, no leftovers).
        st.next_row = 2000;
        st.save(&path).expect("save");
        assert_eq!(ResumeState::load(&path).expect("load"), Some(st));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Same size, other content; and other size.
        for other in [&b"a,b,c,e\n"[..], b"a,b,c,d\nx\n"] {
            let err = ResumeState::load_for(&path, &Fingerprint::of(other)).expect_err("mismatch");
            assert!(matches!(err, ResumeError::Mismatch { .. }), "{err}");
            assert!(err.to_string().contains("delete it"), "{err}");
        }
        std::fs::write(&path, b"garbage").expect("write");
        assert!(matches!(
            ResumeState::load_for(&path, &fp),
            Err(ResumeError::Corrupt { .. })
        ));
        assert_eq!(
            default_resume_path(Path::new("/tmp/a.csv")),
            PathBuf::from("/tmp/a.csv.import-state")
        );
    }
}
