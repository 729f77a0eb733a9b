//! The typed Fly Machines API client.
//!
//! Every call goes through [`FlyClient::call`], which adds the auth header, spaces mutating
//! calls to Fly's ~1 request/s per action and resource, retries what is safe to retry, and
//! maps error answers to [`Error`]s a user can act on. Calls that create something are never
//! repeated blindly: a lost answer comes back as a transient error, and the plan looks the
//! resource up before it tries again.
//!
//! What Fly's own client (superfly/fly-go `flaps`, and flyctl) does about the real API's
//! quirks is matched here and listed, with sources, in `docs/fly-machines-api.md` §11:
//! a new app is waited for ([`FlyClient::wait_for_app`]); a 401 is called a bad token only
//! when the token has not worked at all (a new app answers 401 for a moment too); names are
//! taken only when Fly says `name_taken`; a started machine is destroyed with both `force`
//! and `kill`.

pub mod auth;
pub mod types;

use crate::error::Error;
use crate::random;
use crate::transport::{Clock, HttpRequest, Method, Transport, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
    /// The first and the longest pause of a patient wait (a new name resolving, a volume
    /// being let go): flyctl's DNS check asks 1 s apart at first, then up to 5 s.
    pub poll_min: Duration,
    pub poll_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            mutation_spacing: Duration::from_millis(1000),
            poll_min: Duration::from_secs(1),
            poll_max: Duration::from_secs(5),
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

    /// The pause before the `attempt`-th look of a patient wait: `poll_min` doubling up to
    /// `poll_max`.
    pub fn poll(&self, attempt: u32) -> Duration {
        self.poll_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.poll_max)
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
    /// Whether Fly has answered any call with this token: after that, a 401 is not the token's
    /// fault (a new app answers 401 until it has propagated).
    accepted: AtomicBool,
}

/// How long Fly may take to show a new app to the Machines API (fly-go `flaps/retry.go`:
/// `WaitForApp` retries for up to a minute).
pub const APP_PROPAGATION_PATIENCE: Duration = Duration::from_secs(60);

/// fly-go's `Retry` backoff (`flaps/retry.go`): 100 ms doubling to 500 ms, ±50 %.
pub fn propagation_backoff(attempt: u32) -> Duration {
    let ceiling = (100u64 << attempt.min(3)).min(500);
    Duration::from_millis(ceiling / 2 + random::below(ceiling + 1))
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
            accepted: AtomicBool::new(false),
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

    /// Whether the token is sent as a macaroon (`FlyV1 …`), the kind `GET /v1/tokens/current`
    /// describes (`main.tokenInfo`); anything else is an OAuth/user token (`Bearer …`).
    pub fn sends_macaroons(&self) -> bool {
        self.auth_header.starts_with("FlyV1 ")
    }

    // ---- tokens, regions ----

    pub async fn current_token(&self) -> Result<CurrentToken, Error> {
        self.get("/v1/tokens/current", "check the token").await
    }

    pub async fn regions(&self) -> Result<Regions, Error> {
        self.get("/v1/platform/regions", "list regions").await
    }

    // ---- apps ----

    /// What the name is: ours (200), free (404) or another org's (403: names are global),
    /// as fly-go's `AppNameAvailable` reads it. A 401 for a token Fly accepted is an app
    /// created a moment ago and not yet visible, so it is asked again (up to a minute).
    pub async fn app_name(&self, name: &str) -> Result<AppName, Error> {
        self.poll_app(name, false, &|| {}).await
    }

    /// Waits until Fly shows a just-created app: fly-go's `WaitForApp` retries 404 and 401
    /// for up to a minute, and flyctl calls it after every app create. `on_wait` runs once,
    /// at the first miss, so progress can say what it is waiting for.
    pub async fn wait_for_app(&self, name: &str, on_wait: &dyn Fn()) -> Result<(), Error> {
        match self.poll_app(name, true, on_wait).await? {
            AppName::Ours(_) => Ok(()),
            AppName::TakenElsewhere => Err(Error::NameTaken { app: name.into() }),
            AppName::Free => Err(Error::GaveUpWaiting {
                what: format!("Fly to show the new app {name}"),
                seconds: APP_PROPAGATION_PATIENCE.as_secs(),
            }),
        }
    }

    /// `GET /v1/apps/{name}`, asked again while the app may be propagating: after a 401 for
    /// an accepted token, and after a 404 when `missing_means_not_yet`.
    async fn poll_app(
        &self,
        name: &str,
        missing_means_not_yet: bool,
        on_wait: &dyn Fn(),
    ) -> Result<AppName, Error> {
        let path = format!("/v1/apps/{name}");
        let started = self.clock.now_ms();
        for attempt in 0.. {
            let seen = match self
                .call::<(), App>(Method::Get, &path, None, Repeat::Safe, "look up the app")
                .await
            {
                Ok(app) => return Ok(AppName::Ours(app)),
                Err(Error::Forbidden { .. }) => return Ok(AppName::TakenElsewhere),
                Err(Error::NotFound { .. }) if !missing_means_not_yet => {
                    return Ok(AppName::Free);
                }
                Err(error @ (Error::NotFound { .. } | Error::Unauthorized { .. })) => error,
                Err(error) => return Err(error),
            };
            let waited = Duration::from_millis(self.clock.now_ms().saturating_sub(started));
            if waited >= APP_PROPAGATION_PATIENCE {
                return match seen {
                    Error::NotFound { .. } => Ok(AppName::Free),
                    other => Err(other),
                };
            }
            if attempt == 0 {
                on_wait();
            }
            self.clock.sleep(propagation_backoff(attempt)).await;
        }
        unreachable!("the loop returns")
    }

    /// `POST /v1/apps?wait=true`, as fly-go's `CreateApp` sends it, on `network` (empty: the
    /// org's default). The app may still be invisible for a moment afterwards: follow with
    /// [`FlyClient::wait_for_app`].
    pub async fn create_app(&self, name: &str, org_slug: &str, network: &str) -> Result<(), Error> {
        let body = CreateAppRequest {
            name: name.into(),
            org_slug: org_slug.into(),
            network: network.into(),
        };
        match self
            .call::<_, serde_json::Value>(
                Method::Post,
                "/v1/apps?wait=true",
                Some(&body),
                Repeat::OnlyIfRejected,
                "create the app",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::NameTaken { .. }) => Err(Error::NameTaken { app: name.into() }),
            // The first write a deploy makes: a token that can read but not write ends here,
            // before anything exists.
            Err(Error::Forbidden { .. } | Error::Unauthorized { .. }) => {
                Err(Error::CannotCreateApps {
                    org: org_slug.into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Every app of `org_slug` the token can see (`GET /v1/apps?org_slug=`).
    pub async fn list_apps(&self, org_slug: &str) -> Result<Vec<App>, Error> {
        let list: AppList = self
            .get(&format!("/v1/apps?org_slug={org_slug}"), "list apps")
            .await?;
        Ok(list.apps)
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
        .map_err(|e| machine_error(e, &region, &request.config.image))
    }

    /// Creates a machine from a config document (one Fly returned, edited), so fields textslash
    /// does not model are carried over. `routed: false` is `skip_service_registration`: the
    /// proxy leaves it alone until [`FlyClient::uncordon_machine`] (flyctl's blue/green
    /// deploys, `internal/command/deploy/strategy_bluegreen.go`).
    pub async fn create_machine_from_document(
        &self,
        app: &str,
        region: &str,
        config: &serde_json::Value,
        routed: bool,
    ) -> Result<Machine, Error> {
        let request = serde_json::json!({
            "region": region,
            "config": config,
            "skip_service_registration": !routed,
        });
        self.call(
            Method::Post,
            &format!("/v1/apps/{app}/machines"),
            Some(&request),
            Repeat::OnlyIfRejected,
            "create the machine",
        )
        .await
        .map_err(|e| machine_error(e, region, config["image"].as_str().unwrap_or_default()))
    }

    /// Takes a running machine out of the proxy's routing (SPEC `Machines_cordon`); setting
    /// it twice is a no-op (strategy_bluegreen.go), so it is safe to repeat.
    pub async fn cordon_machine(&self, app: &str, id: &str) -> Result<(), Error> {
        self.call_ignoring_body(
            Method::Post,
            &format!("/v1/apps/{app}/machines/{id}/cordon"),
            "take the old machine out of routing",
        )
        .await
    }

    /// Puts a machine back into the proxy's routing (SPEC `Machines_uncordon`).
    pub async fn uncordon_machine(&self, app: &str, id: &str) -> Result<(), Error> {
        self.call_ignoring_body(
            Method::Post,
            &format!("/v1/apps/{app}/machines/{id}/uncordon"),
            "route requests to the new machine",
        )
        .await
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
        .map_err(|e| machine_error(e, region, config["image"].as_str().unwrap_or_default()))
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
            // SPEC documents `force`; fly-go's `Destroy` sends `kill`. A started machine needs
            // one of them, and sending both works whichever the API reads.
            &format!("/v1/apps/{app}/machines/{id}?force=true&kill=true"),
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
            let outcome = match self.send_once(method, path, body.clone()).await {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    self.accepted.store(true, Ordering::Relaxed);
                    return Ok(resp.body);
                }
                Ok(resp) => {
                    // (`tokens/current` is the question itself: `token::check` reads its 401.)
                    if resp.status == 401
                        && !self.accepted.load(Ordering::Relaxed)
                        && !path.starts_with("/v1/tokens/current")
                    {
                        self.probe_token().await;
                    }
                    let accepted = self.accepted.load(Ordering::Relaxed);
                    error_from_response(resp.status, &resp.body, action, path, accepted)
                }
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
            let mut pause = self.policy.backoff(attempt);
            if outcome == Error::RateLimited {
                // Fly's limits refill once a second (docs/fly-machines-api.md §7).
                pause = pause.max(Duration::from_secs(1));
            }
            self.clock.sleep(pause).await;
        }
    }

    /// Before a 401 is blamed on the token, asks whether the token works at all: the
    /// documented `GET /v1/tokens/current` (macaroons), or, for a token it does not describe,
    /// a plain read of the apps it may see. Either one answering is enough.
    async fn probe_token(&self) {
        let mut probes = vec!["/v1/tokens/current"];
        if !self.sends_macaroons() {
            probes.push("/v1/apps?org_slug=personal");
        }
        for probe in probes {
            if let Ok(resp) = self.send_once(Method::Get, probe, None).await
                && (200..300).contains(&resp.status)
            {
                self.accepted.store(true, Ordering::Relaxed);
                return;
            }
        }
    }

    /// One request to the API with the token, counted in [`FlyClient::calls`].
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<crate::HttpResponse, TransportError> {
        let request = HttpRequest {
            method,
            url: format!("{}{}", self.api_base, path),
            headers: vec![("Authorization".into(), self.auth_header.clone())],
            body,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.transport.send(request).await
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

/// Names the region in a capacity error and the image in an image error, which Fly reports
/// without them (or not where a sentence can use them).
fn machine_error(error: Error, region: &str, image: &str) -> Error {
    match error {
        Error::NoCapacity { .. } => Error::NoCapacity {
            region: region.into(),
        },
        Error::Api { ref message, .. } if message.to_ascii_lowercase().contains("capacity") => {
            Error::NoCapacity {
                region: region.into(),
            }
        }
        Error::ImagePrivate { .. } => Error::ImagePrivate {
            image: image.into(),
        },
        Error::ImageMissing { .. } => Error::ImageMissing {
            image: image.into(),
        },
        other => other,
    }
}

/// What an image the machine could not be given is, from Fly's message: the registry refused
/// an anonymous pull ("failed to get manifest <image>: unauthorized", `denied`, `forbidden`),
/// or has no such tag ("manifest unknown", "not found") (docs/fly-machines-api.md §11, row 20).
/// Read whatever the HTTP status, so a 401 about the image is never taken for the token.
fn image_error(message: &str) -> Option<Error> {
    let message = message.to_ascii_lowercase();
    if !message.contains("manifest") {
        return None;
    }
    let image = String::new();
    if ["unauthorized", "denied", "forbidden"]
        .iter()
        .any(|word| message.contains(word))
    {
        return Some(Error::ImagePrivate { image });
    }
    if message.contains("manifest unknown") || message.contains("not found") {
        return Some(Error::ImageMissing { image });
    }
    None
}

/// `https://relay.fly.dev/x` → `relay.fly.dev`.
pub(crate) fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or(url)
        .to_string()
}

/// How Fly says an app name is taken: the `name_taken` status code, or, from an API that
/// predates it, the legacy message (fly-go `flaps/flaps_error.go` `IsNameTakenError`).
const NAME_TAKEN: &str = "name_taken";
const LEGACY_NAME_TAKEN_MESSAGE: &str = "Name has already been taken";

/// Maps an error answer to what it means for the user. `accepted`: Fly has taken this token
/// before, so a 401 is about the call, not the token.
fn error_from_response(status: u16, body: &str, action: &str, path: &str, accepted: bool) -> Error {
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
    // fly-go reads the status code when there is one, and the legacy text only when not.
    let name_taken = if code.is_empty() {
        message.contains(LEGACY_NAME_TAKEN_MESSAGE)
    } else {
        code == NAME_TAKEN
    };
    if status == 422 && name_taken {
        // The name is in the request's body, not its path: the caller fills it in.
        return Error::NameTaken { app: String::new() };
    }
    // Likewise the image: the caller fills it in.
    if (400..500).contains(&status)
        && let Some(image) = image_error(&message)
    {
        return image;
    }
    match status {
        401 if accepted => Error::Unauthorized {
            action: action.into(),
        },
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
        let refused = r#"{"error":"Authenticate: token validation error"}"#;
        assert_eq!(
            error_from_response(401, refused, "x", "/v1/a", false),
            Error::BadToken,
            "a token Fly never took is a bad token"
        );
        assert_eq!(
            error_from_response(401, refused, "read it", "/v1/apps/new", true),
            Error::Unauthorized {
                action: "read it".into()
            },
            "a token Fly took a moment ago is not called bad"
        );
        assert_eq!(
            error_from_response(429, "", "x", "/v1/a", true),
            Error::RateLimited
        );
        assert!(matches!(
            error_from_response(503, "oops", "x", "/v1/a", true),
            Error::Server { status: 503, .. }
        ));
        assert!(matches!(
            error_from_response(
                412,
                r#"{"error":"no room","status":"insufficient_capacity"}"#,
                "x",
                "/v1/a",
                true
            ),
            Error::NoCapacity { .. }
        ));
        // An image Fly cannot pull is the image's fault, whatever the status: never the token's.
        for (status, message) in [
            (
                422,
                "failed to get manifest ghcr.io/fork/textslash-vm:0.1.0: unauthorized",
            ),
            (
                401,
                "failed to get manifest ghcr.io/fork/x:1: UNAUTHORIZED: authentication required",
            ),
            (
                403,
                "failed to get manifest docker.io/x/y:1: denied: requested access to the resource is denied",
            ),
        ] {
            let body = serde_json::json!({"error": message}).to_string();
            assert_eq!(
                error_from_response(
                    status,
                    &body,
                    "create the machine",
                    "/v1/apps/a/machines",
                    true
                ),
                Error::ImagePrivate {
                    image: String::new()
                },
                "{status} {message}"
            );
        }
        let missing =
            serde_json::json!({"error": "failed to get manifest ghcr.io/o/x:9: manifest unknown"})
                .to_string();
        assert_eq!(
            error_from_response(
                422,
                &missing,
                "create the machine",
                "/v1/apps/a/machines",
                true
            ),
            Error::ImageMissing {
                image: String::new()
            }
        );
        assert_eq!(
            machine_error(
                Error::ImagePrivate {
                    image: String::new()
                },
                "ams",
                "ghcr.io/o/x:1"
            ),
            Error::ImagePrivate {
                image: "ghcr.io/o/x:1".into()
            }
        );
    }

    /// fly-go `IsNameTakenError`: the status code decides when there is one, the legacy text
    /// only when there is none; any other 422 is Fly's own sentence.
    #[test]
    fn a_name_is_taken_only_when_fly_says_so() {
        let taken = |body: &str| {
            matches!(
                error_from_response(422, body, "x", "/v1/apps", true),
                Error::NameTaken { .. }
            )
        };
        assert!(taken(
            r#"{"error":"Name has already been taken","status":"name_taken"}"#
        ));
        assert!(taken(r#"{"error":"Name has already been taken"}"#));
        assert!(!taken(
            r#"{"error":"Name has already been taken","status":"unknown"}"#
        ));
        assert!(matches!(
            error_from_response(
                422,
                r#"{"error":"Name must only contain lowercase letters"}"#,
                "x",
                "/v1/apps",
                true
            ),
            Error::Api { status: 422, ref message, .. } if message.contains("lowercase")
        ));
    }

    #[test]
    fn propagation_backoff_follows_fly_go() {
        for attempt in 0..10 {
            let pause = propagation_backoff(attempt);
            assert!(pause <= Duration::from_millis(750), "{pause:?}");
            assert!(pause >= Duration::from_millis(50), "{pause:?}");
        }
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
