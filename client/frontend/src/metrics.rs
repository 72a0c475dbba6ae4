//! Prometheus metrics: counters and a histogram shared by the core (which
//! counts requests and responses) and the server (transactions, location
//! jobs), encoded in the OpenMetrics text format.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    method: String,
    class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LocationLabels {
    kind: String,
    outcome: String,
}

type HistogramFamily = Family<LocationLabels, Histogram, fn() -> Histogram>;

struct Inner {
    registry: Registry,
    requests: Family<MethodLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    transactions: Gauge,
    location: HistogramFamily,
}

/// The front end's metrics. Clones share the same counters (an `Arc`
/// inside), so the core and the server record into one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Methods are client-chosen tokens: anything unusual is counted as
/// `other`, so a peer cannot grow the label set without bound.
fn method_label(method: &str) -> String {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    ];
    KNOWN
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .map(|m| (*m).to_string())
        .unwrap_or_else(|| "other".to_string())
}

impl Metrics {
    /// The HTTP `Content-Type` of [`Metrics::encode`]'s output.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// Fresh metrics, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<MethodLabels, Counter>::default();
        registry.register("sip_requests", "SIP requests received", requests.clone());
        let responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "sip_responses",
            "SIP responses sent or relayed, by request method and status class",
            responses.clone(),
        );
        let transactions = Gauge::default();
        registry.register(
            "sip_transactions",
            "SIP transactions alive",
            transactions.clone(),
        );
        // 1 ms .. about 16 s: plaintext lookups take microseconds, sharecall
        // resolutions (three providers, SMC) tens to hundreds of ms.
        let location: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15)));
        registry.register_with_unit(
            "sip_location",
            "Location service jobs, by kind (resolve, publish) and outcome",
            Unit::Seconds,
            location.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                responses,
                transactions,
                location,
            }),
        }
    }

    /// A request arrived (method as written, upper case).
    pub fn request(&self, method: &str) {
        self.inner
            .requests
            .get_or_create(&MethodLabels {
                method: method_label(method),
            })
            .inc();
    }

    /// A response was sent or relayed (for `method`, status → class `2xx`).
    pub fn response(&self, method: &str, status: u16) {
        let class = match status {
            100..=699 => format!("{}xx", status / 100),
            _ => "other".to_string(),
        };
        self.inner
            .responses
            .get_or_create(&ResponseLabels {
                method: method_label(method),
                class,
            })
            .inc();
    }

    /// Transactions now alive.
    pub fn set_transactions(&self, n: usize) {
        self.inner
            .transactions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A location job finished (`kind` is `resolve` or `publish`).
    pub fn location(&self, kind: &'static str, ok: bool, elapsed: Duration) {
        self.inner
            .location
            .get_or_create(&LocationLabels {
                kind: kind.to_string(),
                outcome: if ok { "ok" } else { "error" }.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition format (OpenMetrics, ending in `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a metric that refuses to
        // encode leaves a partial page, more useful to a scraper than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_encoded_with_labels_and_shared_by_clones() {
        let m = Metrics::new();
        let c = m.clone();
        m.request("OPTIONS");
        c.request("options");
        m.request("X-WEIRD");
        m.response("OPTIONS", 200);
        m.response("REGISTER", 401);
        m.set_transactions(3);
        m.location("resolve", true, Duration::from_millis(20));
        let text = c.encode();
        assert!(
            text.contains("sip_requests_total{method=\"OPTIONS\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("sip_requests_total{method=\"other\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sip_responses_total{method=\"REGISTER\",class=\"4xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("sip_transactions 3"), "{text}");
        assert!(
            text.contains("sip_location_seconds_count{kind=\"resolve\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
