//! The typed Fly Machines API client.
//!
//! Every call goes through [`FlyClient::call`], which adds the auth header, spaces mutating
//! calls to Fly's ~1 request/s per action and resource, retries what is safe to retry, and
//! maps error answers to [`Error`]s a user can act on. Calls that create something are never
//! repeated blindly: a lost answer comes back as a transient error, and the plan looks the
//! resource up before it tries again.

pub mod auth;
pub mod types;

use crate::error::Error;
use crate::random;
use crate::transport::{Clock, HttpRequest, Method, Transport, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
pub use types::*;

/// How hard the client tries before giving up on a call.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The least time between two mutating calls to the same action and resource.
    pub mutation_spacing: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            mutation_spacing: Duration::from_millis(1000),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff: a random delay up to `base * 2^attempt`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(ms / 2 + random::below(ms / 2 + 1))
    }
}

/// Whether a call may simply be sent again after an ambiguous failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeat {
    /// Reads, deletes, updates: sending twice ends in the same state.
    Safe,
    /// Creates: only a 429 (Fly did nothing) is retried here; anything else goes back to the
    /// plan, which observes before it acts again.
    OnlyIfRejected,
}

/// What a GET of an app name tells about it.
#[derive(Clone, Debug)]
pub enum AppName {
    Free,
    Ours(App),
    TakenElsewhere,
}

/// The Machines API, over any [`Transport`] and [`Clock`].
pub struct FlyClient<T, C> {
    transport: T,
    clock: C,
    api_base: String,
    auth_header: String,
    policy: RetryPolicy,
    last_mutation_ms: Mutex<HashMap<String, u64>>,
    calls: AtomicU32,
}

impl<T: Transport, C: Clock> FlyClient<T, C> {
    /// `api_base` is e.g. `https://api.machines.dev` (no `/v1`); `token` is what the user pasted.
    pub fn new(transport: T, clock: C, api_base: &str, token: &str) -> Self {
        FlyClient {
            transport,
            clock,
            api_base: api_base.trim_end_matches('/').to_string(),
            auth_header: auth::authorization_header(token),
            policy: RetryPolicy::default(),
            last_mutation_ms: Mutex::new(HashMap::new()),
            calls: AtomicU32::new(0),
        }
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// HTTP requests sent so far, retries included.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    // ---- tokens, regions ----

    pub async fn current_token(&self) -> Result<CurrentToken, Error> {
        self.get("/v1/tokens/current", "check the token").await
    }

    pub async fn regions(&self) -> Result<Regions, Error> {
        self.get("/v1/platform/regions", "list regions").await
    }

    // ---- apps ----

    pub async fn app_name(&self, name: &str) -> Result<AppName, Error> {
        let path = format!("/v1/apps/{name}");
        match self
            .call::<(), App>(Method::Get, &path, None, Repeat::Safe, "look up the app")
            .await
        {
            Ok(app) => Ok(AppName::Ours(app)),
            Err(Error::NotFound { .. }) => Ok(AppName::Free),
            Err(Error::Forbidden { .. }) => Ok(AppName::TakenElsewhere),
            Err(e) => Err(e),
        }
    }

    pub async fn create_app(&self, name: &str, org_slug: &str) -> Result<(), Error> {
        let body = CreateAppRequest {
            name: name.into(),
            org_slug: org_slug.into(),
        };
        match self
            .call::<_, serde_json::Value>(
                Method::Post,
                "/v1/apps",
                Some(&body),
                Repeat::OnlyIfRejected,
                "create the app",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Api { status: 422, .. }) => Err(Error::NameTaken { app: name.into() }),
            Err(e) => Err(e),
        }
    }

    pub async fn delete_app(&self, name: &str) -> Result<(), Error> {
        let path = format!("/v1/apps/{name}?force=true");
        self.call_ignoring_body(Method::Delete, &path, "delete the app")
            .await
    }

    // ---- secrets ----

    pub async fn list_secrets(&self, app: &str) -> Result<AppSecrets, Error> {
        self.get(&format!("/v1/apps/{app}/secrets"), "list the app's secrets")
            .await
    }

    /// Sets all `values` at once; returns the new secrets version, when Fly gives one.
    pub async fn set_secrets(
        &self,
        app: &str,
        values: BTreeMap<String, String>,
    ) -> Result<Option<u64>, Error> {
        let body = SetSecretsRequest { values };
        let resp: SetSecretsResponse = self
            .call(
                Method::Post,
                &format!("/v1/apps/{app}/secrets"),
                Some(&body),
                Repeat::Safe,
                "set the app's secrets",
            )
            .await?;
        Ok(resp.version())
    }

    // ---- volumes ----

    pub async fn list_volumes(&self, app: &str) -> Result<Vec<Volume>, Error> {
        self.get(&format!("/v1/apps/{app}/volumes"), "list volumes")
            .await
    }

    pub async fn create_volume(
        &self,
        app: &str,
        request: &CreateVolumeRequest,
    ) -> Result<Volume, Error> {
        self.call(
            Method::Post,
            &format!("/v1/apps/{app}/volumes"),
            Some(request),
            Repeat::OnlyIfRejected,
            "create the volume",
        )
        .await
    }

    pub async fn delete_volume(&self, app: &str, id: &str) -> Result<(), Error> {
        self.call_ignoring_body(
            Method::Delete,
            &format!("/v1/apps/{app}/volumes/{id}"),
            "delete the volume",
        )
        .await
    }

    // ---- machines ----

    pub async fn list_machines(&self, app: &str) -> Result<Vec<Machine>, Error> {
        self.get(&format!("/v1/apps/{app}/machines"), "list machines")
            .await
    }

    pub async fn get_machine(&self, app: &str, id: &str) -> Result<Machine, Error> {
        self.get(&format!("/v1/apps/{app}/machines/{id}"), "read the machine")
            .await
    }

    pub async fn create_machine(
        &self,
        app: &str,
        request: &CreateMachineRequest,
    ) -> Result<Machine, Error> {
        let region = request.region.clone().unwrap_or_default();
        self.call(
            Method::Post,
            &format!("/v1/apps/{app}/machines"),
            Some(request),
            Repeat::OnlyIfRejected,
            "create the machine",
        )
        .await
        .map_err(|e| capacity_error(e, &region))
    }

    /// A machine's config as the JSON document Fly returned, every field kept, for an update
    /// (a full replace) that must not drop what textslash does not model.
    pub async fn machine_config_document(
        &self,
        app: &str,
        id: &str,
    ) -> Result<serde_json::Value, Error> {
        let machine: serde_json::Value = self
            .get(&format!("/v1/apps/{app}/machines/{id}"), "read the machine")
            .await?;
        match machine.get("config") {
            Some(config) if config.is_object() => Ok(config.clone()),
            _ => Err(Error::BadResponse {
                action: "read the machine's config".into(),
                detail: "Fly returned a machine without a config".into(),
            }),
        }
    }

    /// `UpdateMachineRequest`: replaces the machine's whole config (`{region, config}`).
    pub async fn update_machine(
        &self,
        app: &str,
        id: &str,
        region: &str,
        config: &serde_json::Value,
    ) -> Result<Machine, Error> {
        let request = serde_json::json!({ "region": region, "config": config });
        self.call(
            Method::Post,
            &format!("/v1/apps/{app}/machines/{id}"),
            Some(&request),
            Repeat::Safe,
            "update the machine",
        )
        .await
        .map_err(|e| capacity_error(e, region))
    }

    pub async fn start_machine(&self, app: &str, id: &str) -> Result<(), Error> {
        let answer: Option<StartResponse> = self
            .call::<(), _>(
                Method::Post,
                &format!("/v1/apps/{app}/machines/{id}/start"),
                None,
                Repeat::Safe,
                "start the machine",
            )
            .await?;
        match answer {
            Some(StartResponse {
                status: Some(status),
                message,
                ..
            }) if status == "error" => Err(Error::StartFailed {
                machine: id.into(),
                message: message.unwrap_or_else(|| "no reason given".into()),
            }),
            _ => Ok(()),
        }
    }

    /// Runs `command` in a started machine, in its environment (its secrets included).
    pub async fn exec_machine(
        &self,
        app: &str,
        id: &str,
        command: &[&str],
        timeout_secs: u32,
    ) -> Result<ExecResponse, Error> {
        let request = ExecRequest {
            command: command.iter().map(|part| part.to_string()).collect(),
            timeout: timeout_secs,
        };
        let answer: Option<ExecResponse> = self
            .call(
                Method::Post,
                &format!("/v1/apps/{app}/machines/{id}/exec"),
                Some(&request),
                // Our commands are safe to repeat (removing a webhook twice removes it once).
                Repeat::Safe,
                "run a command in the machine",
            )
            .await?;
        Ok(answer.unwrap_or_default())
    }

    pub async fn stop_machine(&self, app: &str, id: &str) -> Result<(), Error> {
        self.call_ignoring_body(
            Method::Post,
            &format!("/v1/apps/{app}/machines/{id}/stop"),
            "stop the machine",
        )
        .await
    }

    pub async fn delete_machine(&self, app: &str, id: &str) -> Result<(), Error> {
        self.call_ignoring_body(
            Method::Delete,
            &format!("/v1/apps/{app}/machines/{id}?force=true"),
            "delete the machine",
        )
        .await
    }

    /// Waits up to `timeout_secs` (Fly caps it at 60) for `state`. `Ok(false)` on Fly's 408:
    /// not there yet, ask again.
    pub async fn wait_machine(
        &self,
        app: &str,
        id: &str,
        state: &str,
        timeout_secs: u32,
    ) -> Result<bool, Error> {
        let path = format!(
            "/v1/apps/{app}/machines/{id}/wait?state={state}&timeout={}",
            timeout_secs.min(60)
        );
        match self
            .call::<(), WaitResponse>(
                Method::Get,
                &path,
                None,
                Repeat::OnlyIfRejected,
                "wait for the machine",
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- IPs ----

    pub async fn list_ips(&self, app: &str) -> Result<Vec<IpAssignment>, Error> {
        let list: IpAssignments = self
            .get(
                &format!("/v1/apps/{app}/ip_assignments"),
                "list IP addresses",
            )
            .await?;
        Ok(list.ips)
    }

    pub async fn assign_ip(
        &self,
        app: &str,
        kind: IpKind,
        org_slug: &str,
    ) -> Result<IpAssignment, Error> {
        let body = AssignIpRequest {
            kind: kind.as_str().into(),
            org_slug: org_slug.into(),
        };
        self.call(
            Method::Post,
            &format!("/v1/apps/{app}/ip_assignments"),
            Some(&body),
            Repeat::OnlyIfRejected,
            "allocate an IP address",
        )
        .await
    }

    pub async fn delete_ip(&self, app: &str, ip: &str) -> Result<(), Error> {
        self.call_ignoring_body(
            Method::Delete,
            &format!("/v1/apps/{app}/ip_assignments/{ip}"),
            "release an IP address",
        )
        .await
    }

    // ---- the machinery ----

    async fn get<R: DeserializeOwned>(&self, path: &str, action: &str) -> Result<R, Error> {
        self.call::<(), R>(Method::Get, path, None, Repeat::Safe, action)
            .await
    }

    async fn call_ignoring_body(
        &self,
        method: Method,
        path: &str,
        action: &str,
    ) -> Result<(), Error> {
        self.send_with_retries::<()>(method, path, None, Repeat::Safe, action)
            .await
            .map(|_| ())
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        repeat: Repeat,
        action: &str,
    ) -> Result<R, Error> {
        let text = self
            .send_with_retries(method, path, body, repeat, action)
            .await?;
        let text = if text.trim().is_empty() {
            "null"
        } else {
            text.as_str()
        };
        serde_json::from_str(text).map_err(|e| Error::BadResponse {
            action: action.into(),
            detail: e.to_string(),
        })
    }

    async fn send_with_retries<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        repeat: Repeat,
        action: &str,
    ) -> Result<String, Error> {
        let body = body.map(|b| serde_json::to_string(b).expect("request bodies always serialise"));
        let mut attempt = 0;
        loop {
            if method != Method::Get {
                self.space_mutation(method, path).await;
            }
            let request = HttpRequest {
                method,
                url: format!("{}{}", self.api_base, path),
                headers: vec![("Authorization".into(), self.auth_header.clone())],
                body: body.clone(),
            };
            self.calls.fetch_add(1, Ordering::Relaxed);
            let outcome = match self.transport.send(request).await {
                Ok(resp) if (200..300).contains(&resp.status) => return Ok(resp.body),
                Ok(resp) => error_from_response(resp.status, &resp.body, action, path),
                Err(TransportError::Blocked(_)) => {
                    return Err(Error::Blocked {
                        api_base: self.api_base.clone(),
                    });
                }
                Err(TransportError::Network(detail)) => Error::Unreachable {
                    host: host_of(&self.api_base),
                    detail,
                },
            };
            let retry = match (&outcome, repeat) {
                (Error::RateLimited, _) => true,
                // A 408 from /wait is an answer, not a failure.
                (Error::Timeout { .. }, _) if path.contains("/wait") => false,
                (e, Repeat::Safe) => e.is_transient(),
                (_, Repeat::OnlyIfRejected) => false,
            };
            attempt += 1;
            if !retry || attempt >= self.policy.attempts {
                return Err(outcome);
            }
            self.clock.sleep(self.policy.backoff(attempt)).await;
        }
    }

    /// Fly allows about one mutating request per second per action and resource.
    async fn space_mutation(&self, method: Method, path: &str) {
        let spacing = self.policy.mutation_spacing.as_millis() as u64;
        if spacing == 0 {
            return;
        }
        let key = format!(
            "{} {}",
            method.as_str(),
            path.split('?').next().unwrap_or(path)
        );
        let wait_ms = {
            let now = self.clock.now_ms();
            let mut last = self.last_mutation_ms.lock().expect("spacing lock");
            let slot = last.get(&key).map_or(now, |t| (t + spacing).max(now));
            last.insert(key, slot);
            slot - now
        };
        if wait_ms > 0 {
            self.clock.sleep(Duration::from_millis(wait_ms)).await;
        }
    }
}

/// Names the region in a capacity error, which Fly reports without it.
fn capacity_error(error: Error, region: &str) -> Error {
    match error {
        Error::NoCapacity { .. } => Error::NoCapacity {
            region: region.into(),
        },
        Error::Api { ref message, .. } if message.to_ascii_lowercase().contains("capacity") => {
            Error::NoCapacity {
                region: region.into(),
            }
        }
        other => other,
    }
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or(url)
        .to_string()
}

/// Maps an error answer to what it means for the user.
fn error_from_response(status: u16, body: &str, action: &str, path: &str) -> Error {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let message = parsed
        .error
        .or(parsed.message)
        .unwrap_or_else(|| format!("no error message (HTTP {status})"));
    let code = parsed.status.unwrap_or_default();
    if code == "insufficient_capacity" {
        return Error::NoCapacity {
            region: String::new(),
        };
    }
    match status {
        401 => Error::BadToken,
        403 => Error::Forbidden {
            action: action.into(),
        },
        404 => Error::NotFound {
            what: path
                .split('?')
                .next()
                .unwrap_or(path)
                .trim_start_matches("/v1")
                .to_string(),
        },
        408 => Error::Timeout {
            what: action.into(),
        },
        429 => Error::RateLimited,
        500..=599 => Error::Server {
            status,
            action: action.into(),
        },
        _ => Error::Api {
            status,
            action: action.into(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_become_actionable_errors() {
        assert_eq!(
            error_from_response(
                401,
                r#"{"error":"Authenticate: token validation error"}"#,
                "x",
                "/v1/a"
            ),
            Error::BadToken
        );
        assert_eq!(
            error_from_response(429, "", "x", "/v1/a"),
            Error::RateLimited
        );
        assert!(matches!(
            error_from_response(503, "oops", "x", "/v1/a"),
            Error::Server { status: 503, .. }
        ));
        assert!(matches!(
            error_from_response(
                422,
                r#"{"error":"Name has already been taken","status":"name_taken"}"#,
                "x",
                "/v1/apps"
            ),
            Error::Api { status: 422, .. }
        ));
        assert!(matches!(
            error_from_response(
                412,
                r#"{"error":"no room","status":"insufficient_capacity"}"#,
                "x",
                "/v1/a"
            ),
            Error::NoCapacity { .. }
        ));
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            assert!(p.backoff(attempt) <= p.max_delay);
        }
        assert!(p.backoff(1) >= Duration::from_millis(500));
    }

    /// (time in ms, URL, headers) of one request the fake saw.
    type SentRequest = (u64, String, Vec<(String, String)>);

    /// A clock whose sleeps only advance its own time, and a transport that records calls.
    #[derive(Default)]
    struct Fake {
        now: std::cell::Cell<u64>,
        sent: std::cell::RefCell<Vec<SentRequest>>,
    }

    impl Clock for Fake {
        async fn sleep(&self, duration: Duration) {
            self.now.set(self.now.get() + duration.as_millis() as u64);
        }
        fn now_ms(&self) -> u64 {
            self.now.get()
        }
    }

    impl Transport for Fake {
        async fn send(&self, request: HttpRequest) -> Result<crate::HttpResponse, TransportError> {
            self.sent.borrow_mut().push((
                self.now.get(),
                format!("{} {}", request.method.as_str(), request.url),
                request.headers,
            ));
            Ok(crate::HttpResponse {
                status: 200,
                body: r#"{"ip":"2a09::1"}"#.into(),
            })
        }
    }

    #[tokio::test]
    async fn mutations_of_one_resource_are_spaced_a_second_apart() {
        let fake = Fake::default();
        let fly = FlyClient::new(&fake, &fake, "http://fly", "fm2_secret");
        fly.assign_ip("a", IpKind::V6, "o").await.unwrap();
        fly.assign_ip("a", IpKind::SharedV4, "o").await.unwrap();
        fly.assign_ip("b", IpKind::V6, "o").await.unwrap();
        fly.list_ips("a").await.unwrap();
        let sent = fake.sent.borrow();
        let times: Vec<u64> = sent.iter().map(|(t, _, _)| *t).collect();
        // Second call to the same resource waits a second; another resource and reads do not.
        assert_eq!(times, vec![0, 1000, 1000, 1000]);
        assert_eq!(
            sent[0].2,
            vec![("Authorization".to_string(), "FlyV1 fm2_secret".to_string())]
        );
        assert!(
            sent.iter().all(|(_, url, _)| !url.contains("secret")),
            "no token in a URL"
        );
        assert_eq!(fly.calls(), 4);
    }

    #[test]
    fn ip_kinds_are_inferred_from_addresses() {
        let ip = |ip: &str, shared| IpAssignment {
            ip: ip.into(),
            region: None,
            shared,
        };
        assert_eq!(ip("fdaa:0:1::3", false).kind(), IpKind::PrivateV6);
        assert_eq!(ip("2a09:8280::1", false).kind(), IpKind::V6);
        assert_eq!(ip("66.241.124.1", true).kind(), IpKind::SharedV4);
        assert_eq!(ip("137.66.1.1", false).kind(), IpKind::V4);
    }
}
