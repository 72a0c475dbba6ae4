//! The connection to the providers: their URLs, one HTTP exchange with
//! its retries, and one request driven at all three (post, poll while
//! pending, give up when another provider's refusal makes it moot).

use super::*;

/// Parses a comma-separated list of exactly three provider base URLs, in
/// provider order P0, P1, P2. Each is `https://HOST:PORT`, optionally
/// pinned as `https://HOST:PORT#sha256=FINGERPRINT` (see [`super::tls`]);
/// `http://` parses, but a [`Client`] refuses to use it unless
/// [`Client::allow_plain_http`].
pub fn parse_provider_list(list: &str) -> Result<[String; 3], Error> {
    let urls: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [a, b, c] = urls.as_slice() else {
        return Err(Error::Config(format!(
            "expected three provider URLs (P0,P1,P2), got {}",
            urls.len()
        )));
    };
    Ok([check_url(0, a)?, check_url(1, b)?, check_url(2, c)?])
}

/// The URL in normal form, its pin (if any) kept as `#sha256=hex`.
pub(super) fn check_url(i: usize, s: &str) -> Result<String, Error> {
    Ok(match split_url(i, s)? {
        (base, Some(pin)) => format!("{base}#{}{pin}", tls::PIN_PREFIX),
        (base, None) => base,
    })
}

/// The base URL (no trailing slash, no fragment) and its pin.
pub(super) fn split_url(i: usize, s: &str) -> Result<(String, Option<tls::CertPin>), Error> {
    let bad = |why: &str| Error::Config(format!("provider URL {} ({:?}): {why}", i, short(s)));
    let mut url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "must start with https:// (or http:// where plain HTTP is explicitly allowed)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if url.query().is_some() {
        return Err(bad("must not have a query"));
    }
    let pin = tls::pin_of_fragment(url.fragment()).map_err(|e| bad(&e))?;
    if pin.is_some() && url.scheme() == "http" {
        return Err(bad("a certificate pin needs https://"));
    }
    url.set_fragment(None);
    Ok((url.as_str().trim_end_matches('/').to_owned(), pin))
}

/// The HTTP client for one provider: its own pool (connections are kept
/// alive and reused, one TLS handshake per connection) and, when pinned,
/// its own verifier.
pub(super) fn http_client(pin: Option<tls::CertPin>) -> Result<reqwest::Client, Error> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("sharecall-client/", env!("CARGO_PKG_VERSION")));
    let builder = match pin {
        Some(pin) => builder.use_preconfigured_tls(
            (*tls::pinned_config(&[pin]).map_err(|e| Error::Http(e.to_string()))?).clone(),
        ),
        None => builder,
    };
    builder.build().map_err(|e| Error::Http(e.to_string()))
}

/// An HTTP answer as read.
pub(super) struct Exchange {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Vec<u8>,
}

impl Exchange {
    pub(super) fn refused(&self) -> ProviderError {
        match parse_error(&self.body) {
            Some(e) if e.code == "aborted" => ProviderError::Aborted {
                message: clip(&e.message, MESSAGE_MAX),
            },
            Some(e) => ProviderError::Refused {
                status: self.status,
                code: Some(short(&e.code)),
                message: clip(&e.message, MESSAGE_MAX),
            },
            None => ProviderError::Refused {
                status: self.status,
                code: None,
                message: if self.body.is_empty() {
                    "(empty body)".into()
                } else {
                    clip(&String::from_utf8_lossy(&self.body), MESSAGE_MAX)
                },
            },
        }
    }
}

/// The deepest cause of a transport error ("Connection refused (os error
/// 111)" rather than "error sending request").
pub(super) fn transport_detail(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl Client {
    /// Sends a signed request to the three providers concurrently, waits for
    /// their results and checks that they agree. Sending the same
    /// [`SignedRequest`] again is safe: providers answer a repeated request
    /// from its recorded outcome.
    pub async fn send(&self, request: &SignedRequest) -> Result<Submission, Error> {
        self.check_transport()?;
        let deadline = Instant::now() + self.timeout;
        let (cancel, _keep) = watch::channel(None::<PartyId>);
        let cancel = &cancel;
        let run = |p: PartyId| async move {
            let mut rx = cancel.subscribe();
            let last = Mutex::new(String::from("no answer yet"));
            let reply = tokio::select! {
                r = self.drive(p, request, deadline, &last) => r,
                Some(because) = wait_cancelled(&mut rx) => {
                    ProviderReply::Failed(ProviderError::Cancelled { because, last: get(&last) })
                }
            };
            if let ProviderReply::Failed(e) = &reply {
                if e.is_final_refusal() {
                    cancel.send_if_modified(|v| {
                        let first = v.is_none();
                        if first {
                            *v = Some(p);
                        }
                        first
                    });
                }
            }
            reply
        };
        let (a, b, c) = tokio::join!(
            run(PartyId::ALL[0]),
            run(PartyId::ALL[1]),
            run(PartyId::ALL[2])
        );
        decide(
            request.request_id(),
            request.kind(),
            &self.providers,
            [a, b, c],
        )
    }

    /// One provider's side of a request: post the part, poll while pending.
    pub(super) async fn drive(
        &self,
        p: PartyId,
        request: &SignedRequest,
        deadline: Instant,
        last: &Mutex<String>,
    ) -> ProviderReply {
        let base = &self.providers[p.index()];
        let post_url = format!("{base}/v1/requests");
        let get_url = format!("{base}/v1/requests/{}", request.request_id());
        let body = request.body(p);
        let started = Instant::now();
        let mut posting = true;
        let mut poll_delay = POLL_START;
        loop {
            let x = if posting {
                self.call(
                    Method::POST,
                    &post_url,
                    Some(body),
                    None,
                    deadline,
                    started,
                    last,
                )
                .await
            } else {
                let sig = Some(request.signature());
                self.call(Method::GET, &get_url, None, sig, deadline, started, last)
                    .await
            };
            let opener = Opener {
                keys: request.answer_keys(),
                request_id: request.request_id(),
                provider: p.index() as u8,
            };
            let x = match x {
                Ok(x) => x,
                Err(e) => return ProviderReply::Failed(e),
            };
            match x.status {
                200 | 202 => match parse_answer(request.kind(), &x.body, opener) {
                    Err(e) => {
                        return ProviderReply::Failed(ProviderError::BadAnswer {
                            status: x.status,
                            detail: e.0,
                        })
                    }
                    Ok(a) if a.request_id() != request.request_id() => {
                        return ProviderReply::Failed(ProviderError::BadAnswer {
                            status: x.status,
                            detail: format!("answer is about request {:?}", short(a.request_id())),
                        })
                    }
                    Ok(Answer::Done { seq, result, .. }) => {
                        return ProviderReply::Done { seq, result }
                    }
                    Ok(Answer::Pending { seq, .. }) => {
                        posting = false;
                        set(
                            last,
                            match seq {
                                Some(s) => format!("pending, ordered as seq {s}"),
                                None => "pending, not yet ordered".into(),
                            },
                        );
                    }
                },
                // The provider does not know the request (it never got or
                // lost the part): send the same signed part again.
                404 if !posting => {
                    posting = true;
                    set(
                        last,
                        "the provider did not know the request; sending the part again".into(),
                    );
                }
                _ => return ProviderReply::Failed(x.refused()),
            }
            let now = Instant::now();
            if now >= deadline {
                return ProviderReply::Failed(ProviderError::Timeout {
                    waited: started.elapsed(),
                    last: get(last),
                });
            }
            tokio::time::sleep_until((now + poll_delay).min(deadline).into()).await;
            poll_delay = (poll_delay * 2).min(POLL_MAX);
        }
    }

    /// One HTTP exchange with retries of transport failures, `429` (after
    /// `Retry-After`) and `502/503/504`, always with the same body. Any
    /// other answer is returned for the caller to interpret.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        signature: Option<&[u8; 64]>,
        deadline: Instant,
        started: Instant,
        last: &Mutex<String>,
    ) -> Result<Exchange, ProviderError> {
        let mut failures = 0u32;
        loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                return Err(ProviderError::Timeout {
                    waited: started.elapsed(),
                    last: get(last),
                });
            }
            let delay = match self
                .exchange(
                    method.clone(),
                    url,
                    body,
                    signature,
                    remaining.min(ATTEMPT_TIMEOUT),
                )
                .await
            {
                Err(detail) => {
                    failures += 1;
                    set(last, format!("unreachable: {detail}"));
                    if failures >= TRANSIENT_ATTEMPTS {
                        return Err(ProviderError::Unreachable {
                            attempts: failures,
                            detail,
                        });
                    }
                    RETRY_START * 2u32.pow(failures - 1)
                }
                Ok(x) if x.status == 429 => {
                    set(last, "rate limited (429)".into());
                    x.retry_after.unwrap_or(RATE_LIMIT_DEFAULT)
                }
                Ok(x) if matches!(x.status, 502..=504) => {
                    failures += 1;
                    let refused = x.refused();
                    set(last, refused.to_string());
                    if failures >= TRANSIENT_ATTEMPTS {
                        return Err(refused);
                    }
                    RETRY_START * 2u32.pow(failures - 1)
                }
                Ok(x) => return Ok(x),
            };
            tracing::debug!(url, ?delay, last = %get(last), "retrying");
            tokio::time::sleep_until((Instant::now() + delay).min(deadline).into()).await;
        }
    }

    /// One HTTP request (a GET with `signature` in the
    /// `Sharecall-Signature` header); `Err` is a transport failure.
    pub(super) async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        signature: Option<&[u8; 64]>,
        timeout: Duration,
    ) -> Result<Exchange, String> {
        // The provider whose base URL this is (each has its own pool and pin).
        let http = self
            .providers
            .iter()
            .position(|base| {
                url.strip_prefix(base.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map_or(&self.http[0], |i| &self.http[i]);
        let mut rb = http.request(method.clone(), url).timeout(timeout);
        if let (true, Some(sig)) = (method == Method::GET, signature) {
            // Polling needs the request's signature (docs/API.md).
            rb = rb.header("Sharecall-Signature", hex::encode(sig));
        }
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let mut resp = rb.send().await.map_err(|e| transport_detail(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_detail(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("answer body larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Exchange {
            status,
            retry_after,
            body,
        })
    }
}

impl Client {
    /// Refuses, before anything is sent, a plain `http://` provider URL
    /// unless [`Client::allow_plain_http`] was called.
    pub(super) fn check_transport(&self) -> Result<(), Error> {
        if self.plain_http_allowed {
            return Ok(());
        }
        match self.providers.iter().position(|u| u.starts_with("http://")) {
            Some(i) => Err(Error::Config(format!(
                "provider URL {i} ({}) is plain HTTP: anyone on the path would read its \
                 shares and request ids; use https:// (pinned: https://HOST:PORT#sha256=FINGERPRINT), \
                 or allow plain HTTP explicitly (--insecure-plain-http, Client::allow_plain_http)",
                short(&self.providers[i])
            ))),
            None => Ok(()),
        }
    }
}

pub(super) fn set(cell: &Mutex<String>, value: String) {
    *cell.lock().unwrap_or_else(PoisonError::into_inner) = value;
}

pub(super) fn get(cell: &Mutex<String>) -> String {
    cell.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

pub(super) async fn wait_cancelled(rx: &mut watch::Receiver<Option<PartyId>>) -> Option<PartyId> {
    rx.wait_for(Option::is_some).await.ok().and_then(|v| *v)
}
