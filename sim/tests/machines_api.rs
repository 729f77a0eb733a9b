//! The Machines API emulator, driven over real HTTP on loopback, as provision and the page
//! drive it. Every answer is checked against Fly's OpenAPI document.

use serde_json::{Value, json};
use sim::faults::{FaultConfig, FaultRule};
use sim::quirks::{FlyQuirks, RateLimit};
use sim::testing::eventually;
use sim::{Program, SimConfig, SimHandle};
use std::time::Duration;

struct Harness {
    sim: SimHandle,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The sim's mechanics alone: Fly's lags and limits are off here, and each one is pinned
    /// by its own test below (`quirk_*`).
    async fn start() -> Harness {
        Harness::start_with(|config| config.quirks = FlyQuirks::none()).await
    }

    async fn start_with(adjust: impl FnOnce(&mut SimConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SimConfig::new(dir.path().to_path_buf());
        config.images.rules = vec![
            (
                "echo-proc".into(),
                Program::Path(env!("CARGO_BIN_EXE_sim-test-machine").into()),
            ),
            ("echo".into(), Program::Echo),
        ];
        adjust(&mut config);
        let sim = sim::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Harness {
            sim,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    /// Calls the API with the sim's token and checks the answer fits Fly's schema.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .header("Authorization", "FlyV1 sim-token");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if value != Value::Null {
            sim::openapi::spec()
                .check_response(method, path, status, &value)
                .unwrap_or_else(|e| panic!("{method} {path} answered off-schema: {e}"));
        }
        (status, value)
    }

    async fn machine_state(&self, app: &str, id: &str) -> String {
        self.call("GET", &format!("/v1/apps/{app}/machines/{id}"), None)
            .await
            .1["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The machine's events, newest first.
    async fn events(&self, app: &str, id: &str) -> Vec<serde_json::Value> {
        let (_, machine) = self
            .call("GET", &format!("/v1/apps/{app}/machines/{id}"), None)
            .await;
        machine["events"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for the machine's `count`-th exit event: (exit code, restarting).
    async fn exit(&self, count: usize, app: &str, id: &str) -> (i64, bool) {
        sim::testing::eventually("an exit event", Duration::from_secs(10), async || {
            let exits: Vec<_> = self
                .events(app, id)
                .await
                .into_iter()
                .filter(|e| e["type"] == "exit")
                .collect();
            if exits.len() != count {
                return None;
            }
            let newest = &exits[0]["request"]["exit_event"];
            Some((
                newest["exit_code"].as_i64().unwrap(),
                newest["restarting"].as_bool().unwrap(),
            ))
        })
        .await
    }

    async fn wait_for(&self, app: &str, id: &str, state: &str) {
        let (status, _) = self
            .call(
                "GET",
                &format!("/v1/apps/{app}/machines/{id}/wait?state={state}&timeout=10"),
                None,
            )
            .await;
        assert_eq!(status, 200, "machine {id} never reached {state}");
    }

    /// An app with secrets, a volume, and one machine of `image` with `restart` policy.
    async fn app_with_machine(&self, app: &str, image: &str, restart: &str) -> (String, String) {
        assert_eq!(
            self.call(
                "POST",
                "/v1/apps",
                Some(json!({"name": app, "org_slug": "personal"}))
            )
            .await
            .0,
            201
        );
        let (status, secrets) = self
            .call(
                "POST",
                &format!("/v1/apps/{app}/secrets"),
                Some(json!({"values": {"SECRET_A": "alpha"}})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(secrets["version"], 1);
        let (_, volume) = self
            .call("POST", &format!("/v1/apps/{app}/volumes"), Some(json!({"name": "data", "region": "ams", "size_gb": 1, "require_unique_zone": false})))
            .await;
        let volume_id = volume["id"].as_str().unwrap().to_string();
        let config = json!({
            "image": image,
            "env": {"DATA_DIR": "/data", "PEER": format!("http://{app}.flycast")},
            "mounts": [{"volume": volume_id, "path": "/data"}],
            "services": [{"protocol": "tcp", "internal_port": 8080, "autostart": true, "autostop": "off",
                          "ports": [{"port": 80, "handlers": ["http"]}]}],
            "checks": {"health": {"type": "http", "port": 8080, "path": "/health", "method": "GET"}},
            "restart": {"policy": restart},
        });
        let (status, machine) = self
            .call(
                "POST",
                &format!("/v1/apps/{app}/machines"),
                Some(json!({"region": "ams", "config": config})),
            )
            .await;
        assert_eq!(status, 200, "{machine}");
        let id = machine["id"].as_str().unwrap().to_string();
        for kind in ["v6", "private_v6"] {
            let (status, _) = self
                .call(
                    "POST",
                    &format!("/v1/apps/{app}/ip_assignments"),
                    Some(json!({"type": kind, "org_slug": "personal"})),
                )
                .await;
            assert_eq!(status, 200);
        }
        (id, volume_id)
    }

    async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn a_machine_is_a_real_process_with_env_secrets_volume_and_both_doors() {
    let h = Harness::start().await;
    let (id, volume) = h.app_with_machine("t1", "test/echo-proc:1", "no").await;
    h.wait_for("t1", &id, "started").await;

    // Secrets and rewritten env reach the process; the public and Flycast doors both work.
    assert_eq!(
        h.get_text("/apps/t1/env/SECRET_A").await,
        (200, "alpha".into())
    );
    let (_, peer) = h.get_text("/flycast/t1/env/PEER").await;
    assert_eq!(peer, format!("{}/net/default/flycast/t1", h.sim.base_url()));
    let (_, data_dir) = h.get_text("/flycast/t1/env/DATA_DIR").await;
    assert!(
        data_dir.ends_with(&format!("volumes/{volume}")),
        "{data_dir}"
    );

    // The volume is a directory that outlives the process.
    let put = h
        .http
        .put(h.url("/flycast/t1/files/note.txt"))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&data_dir).join("note.txt")).unwrap(),
        "kept"
    );

    // Checks run against the process, as Fly reports them.
    let (_, machine) = h
        .call("GET", &format!("/v1/apps/t1/machines/{id}"), None)
        .await;
    assert_eq!(machine["checks"][0]["status"], "passing", "{machine}");

    // The process exits: the machine is stopped (policy "no").
    h.http.post(h.url("/apps/t1/exit/0")).send().await.unwrap();
    h.wait_for("t1", &id, "stopped").await;

    // A Flycast request starts it again and is held until it answers.
    assert_eq!(
        h.get_text("/flycast/t1/files/note.txt").await,
        (200, "kept".into())
    );
    assert_eq!(h.machine_state("t1", &id).await, "started");

    // Destroy kills the process: its door stops answering.
    let (status, _) = h
        .call(
            "DELETE",
            &format!("/v1/apps/t1/machines/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.get_text("/apps/t1/health").await.0, 502);
    // Destroying finishes after the answer, as on Fly; `/wait` tells when.
    let (_, list) = h.call("GET", "/v1/apps/t1/machines", None).await;
    assert_eq!(list[0]["state"], "destroying");
    let (status, _) = h
        .call(
            "GET",
            &format!("/v1/apps/t1/machines/{id}/wait?state=destroyed&timeout=10"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = h.call("GET", "/v1/apps/t1/machines", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn restart_policies_are_honoured() {
    let h = Harness::start().await;
    let (on_failure, _) = h.app_with_machine("rp1", "test/echo", "on-failure").await;
    h.wait_for("rp1", &on_failure, "started").await;
    h.http.post(h.url("/apps/rp1/exit/3")).send().await.unwrap();
    // The exit event says what flyd decided; a restart then shows as a start by flyd.
    assert_eq!(h.exit(1, "rp1", &on_failure).await, (3, true));
    h.wait_for("rp1", &on_failure, "started").await;
    let events = h.events("rp1", &on_failure).await;
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["source"].as_str()),
        (Some("start"), Some("flyd")),
        "{events:?}"
    );
    h.http.post(h.url("/apps/rp1/exit/0")).send().await.unwrap();
    assert_eq!(
        h.exit(2, "rp1", &on_failure).await,
        (0, false),
        "a clean exit is not restarted"
    );
    assert_eq!(h.machine_state("rp1", &on_failure).await, "stopped");

    let (always, _) = h.app_with_machine("rp2", "test/echo", "always").await;
    h.wait_for("rp2", &always, "started").await;
    h.http.post(h.url("/apps/rp2/exit/0")).send().await.unwrap();
    assert_eq!(h.exit(1, "rp2", &always).await, (0, true));
    h.wait_for("rp2", &always, "started").await;
}

/// A preflight as Chromium sends it before a Fly call from a page.
async fn preflight(h: &Harness, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    h.http
        .request(reqwest::Method::OPTIONS, h.url("/v1/apps"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", headers)
        .send()
        .await
        .unwrap()
}

fn allowed(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default()
}

#[tokio::test]
async fn cors_allows_only_the_listed_origins_methods_and_headers() {
    let h =
        Harness::start_with(|c| c.cors = sim::Cors::Only(vec!["http://localhost:9".into()])).await;
    let ok = preflight(
        &h,
        "http://localhost:9",
        "POST",
        "authorization,content-type",
    )
    .await;
    assert!(ok.status().is_success());
    assert_eq!(
        allowed(&ok, "access-control-allow-origin"),
        "http://localhost:9"
    );
    assert!(allowed(&ok, "access-control-allow-methods").contains("delete"));
    assert!(!allowed(&ok, "access-control-allow-methods").contains("patch"));
    assert_eq!(
        allowed(&ok, "access-control-allow-headers"),
        "authorization,content-type"
    );
    assert_eq!(allowed(&ok, "access-control-allow-credentials"), "");
    let stranger = preflight(&h, "https://evil.example", "POST", "authorization").await;
    assert_eq!(allowed(&stranger, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn cors_refuse_answers_no_browser_at_all() {
    let h = Harness::start_with(|c| c.cors = sim::Cors::Refuse).await;
    let r = preflight(&h, "http://localhost:9", "GET", "authorization").await;
    assert!(!r.status().is_success(), "{}", r.status());
    let get = h
        .http
        .get(h.url("/v1/apps/x"))
        .header("Origin", "http://localhost:9")
        .bearer_auth("sim-token")
        .send()
        .await
        .unwrap();
    assert!(
        get.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        get.headers()
    );
}

#[tokio::test]
async fn tokens_names_and_bodies_are_checked_like_fly() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(h.url("/v1/apps/x"))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "Authenticate: token validation error"
    );

    assert_eq!(h.call("GET", "/v1/apps/taken-relay", None).await.0, 403);
    assert_eq!(h.call("GET", "/v1/apps/free-name", None).await.0, 404);
    let (status, body) = h
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"name": "taken-relay", "org_slug": "personal"})),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (422, Some("name_taken")));

    // A body off Fly's schema is refused, naming the schema.
    assert_eq!(
        h.call(
            "POST",
            "/v1/apps",
            Some(json!({"name": "ok", "org_slug": "personal"}))
        )
        .await
        .0,
        201
    );
    let (status, body) = h
        .call(
            "POST",
            "/v1/apps/ok/volumes",
            Some(json!({"name": "data", "region": "ams", "size_gb": "big"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("CreateVolumeRequest"),
        "{body}"
    );
}

#[tokio::test]
async fn injected_faults_happen_exactly_as_configured() {
    let h = Harness::start().await;
    h.call(
        "POST",
        "/v1/apps",
        Some(json!({"name": "f", "org_slug": "personal"})),
    )
    .await;
    let faults = FaultConfig {
        latency_ms: 0,
        rules: vec![
            FaultRule::fail("POST", "/volumes", 2, 500),
            FaultRule::drop_after_acting("POST", "/ip_assignments", 1),
        ],
    };
    let r = h
        .http
        .post(h.url("/sim/faults"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let volume = json!({"name": "data", "region": "ams", "size_gb": 1});
    assert_eq!(
        h.call("POST", "/v1/apps/f/volumes", Some(volume.clone()))
            .await
            .0,
        200
    );
    assert_eq!(
        h.call("POST", "/v1/apps/f/volumes", Some(volume.clone()))
            .await
            .0,
        500
    );
    assert_eq!(
        h.call("POST", "/v1/apps/f/volumes", Some(volume)).await.0,
        200
    );
    let (_, volumes) = h.call("GET", "/v1/apps/f/volumes", None).await;
    assert_eq!(
        volumes.as_array().unwrap().len(),
        2,
        "the failed call created nothing"
    );

    // Acted, but the answer was lost: the IP exists all the same.
    let (status, _) = h
        .call(
            "POST",
            "/v1/apps/f/ip_assignments",
            Some(json!({"type": "v6", "org_slug": "personal"})),
        )
        .await;
    assert_eq!(status, 504);
    let (_, ips) = h.call("GET", "/v1/apps/f/ip_assignments", None).await;
    assert_eq!(ips["ips"].as_array().unwrap().len(), 1);

    // Latency applies to every API call.
    h.http
        .post(h.url("/sim/faults"))
        .json(&FaultConfig {
            latency_ms: 150,
            rules: vec![],
        })
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    h.call("GET", "/v1/apps/f", None).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn the_state_dump_shows_secret_names_never_values() {
    let h = Harness::start().await;
    h.app_with_machine("d", "test/echo", "no").await;
    let dump: Value = h
        .http
        .get(h.url("/sim/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = dump.to_string();
    assert!(text.contains("SECRET_A"));
    assert!(!text.contains("alpha"));
    assert_eq!(dump["apps"][0]["ips"].as_array().unwrap().len(), 2);
    let urls: Value = h
        .http
        .get(h.url("/sim/apps/d"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        urls["flycast_url"],
        format!("{}/flycast/d", h.sim.base_url())
    );
}

/// A Fly with one lag on, `length` long, and everything else off.
async fn with_quirk(set: impl FnOnce(&mut FlyQuirks)) -> Harness {
    Harness::start_with(|config| {
        let mut quirks = FlyQuirks::none();
        set(&mut quirks);
        config.quirks = quirks;
    })
    .await
}

async fn create_app(h: &Harness, name: &str) {
    let (status, _) = h
        .call(
            "POST",
            "/v1/apps?wait=true",
            Some(json!({"name": name, "org_slug": "personal"})),
        )
        .await;
    assert_eq!(status, 201);
}

/// Waits until `GET path` answers `want` (at most 10 s).
async fn until_status(h: &Harness, path: &str, want: u16) {
    eventually(
        &format!("GET {path} to answer {want}"),
        Duration::from_secs(10),
        async || (h.call("GET", path, None).await.0 == want).then_some(()),
    )
    .await;
}

/// fly-go `WaitForApp`: a new app answers 401 (or 404) for a while, even after
/// `?wait=true`, and then 200.
#[tokio::test]
async fn quirk_a_new_app_is_hidden_for_a_moment() {
    for status in [401, 404] {
        let h = with_quirk(|q| {
            q.new_app_hidden_for = Duration::from_millis(400);
            q.new_app_status = status;
        })
        .await;
        create_app(&h, "shy").await;
        assert_eq!(h.call("GET", "/v1/apps/shy", None).await.0, status);
        assert_eq!(
            h.call("GET", "/v1/apps/shy/volumes", None).await.0,
            status,
            "everything on the app is hidden, not just the app"
        );
        assert_eq!(h.call("GET", "/v1/tokens/current", None).await.0, 200);
        until_status(&h, "/v1/apps/shy", 200).await;
    }
}

/// flyctl's `WaitForState` (404 right after create) and `launchGreenMachineWithRetry` (lists
/// lag writes): reads miss a new machine for a moment; the create's own answer carries it.
#[tokio::test]
async fn quirk_a_new_machine_is_missing_from_reads_for_a_moment() {
    let h = with_quirk(|q| q.new_machine_unlisted_for = Duration::from_millis(400)).await;
    create_app(&h, "lag").await;
    let (status, machine) = h
        .call(
            "POST",
            "/v1/apps/lag/machines",
            Some(json!({"region": "ams", "config": {"image": "echo"}})),
        )
        .await;
    assert_eq!(status, 200);
    let id = machine["id"].as_str().unwrap();
    assert_eq!(
        h.call("GET", "/v1/apps/lag/machines", None).await.1,
        json!([])
    );
    let path = format!("/v1/apps/lag/machines/{id}");
    assert_eq!(h.call("GET", &path, None).await.0, 404);
    assert_eq!(
        h.call("GET", &format!("{path}/wait?state=started&timeout=1"), None)
            .await
            .0,
        404
    );
    until_status(&h, &path, 200).await;
    assert_eq!(
        h.call("GET", "/v1/apps/lag/machines", None)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A started machine is destroyed only with `force` (SPEC) or `kill` (fly-go); its volume is
/// refused deletion until a moment after the machine is gone, then lists as
/// `pending_destroy` (fly-go `destroyedVolumeStates`) until it is.
#[tokio::test]
async fn quirk_a_destroyed_machine_lets_go_of_its_volume_late() {
    let h = Harness::start_with(|config| {
        config.quirks = FlyQuirks::none();
        config.quirks.volume_detach_after = Duration::from_millis(400);
        config.deletion_delay = Duration::from_millis(100);
    })
    .await;
    let app = "held";
    let (id, volume) = h.app_with_machine(app, "echo", "no").await;
    let machine = format!("/v1/apps/{app}/machines/{id}");
    assert_eq!(
        h.call("DELETE", &machine, None).await.0,
        412,
        "started, no force"
    );
    assert_eq!(
        h.call("DELETE", &format!("{machine}?kill=true"), None)
            .await
            .0,
        200
    );
    h.wait_for(app, &id, "destroyed").await;
    let volume_path = format!("/v1/apps/{app}/volumes/{volume}");
    let (status, _) = h.call("DELETE", &volume_path, None).await;
    assert_eq!(
        status, 412,
        "still attached right after its machine is gone"
    );
    let deleted = eventually("the volume let go", Duration::from_secs(10), async || {
        let (status, body) = h.call("DELETE", &volume_path, None).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(deleted["state"], "pending_destroy");
    let (_, volumes) = h
        .call("GET", &format!("/v1/apps/{app}/volumes"), None)
        .await;
    assert_eq!(volumes[0]["state"], "pending_destroy");
}

/// flyctl `checkDNS`: a new app's name does not resolve at first. The sim ends the
/// connection without an answer, which is what a client sees of that.
#[tokio::test]
async fn quirk_a_new_public_name_does_not_answer_at_first() {
    let h = with_quirk(|q| q.new_name_unresolved_for = Duration::from_millis(600)).await;
    // (It gets its public IP last of all.)
    let app = "fresh";
    h.app_with_machine(app, "echo", "no").await;
    let public = h.url(&format!("/apps/{app}/health"));
    let first = h.http.get(&public).send().await;
    let failed = match first {
        Err(_) => true,
        Ok(response) => response.text().await.is_err(),
    };
    assert!(failed, "a name that does not resolve gives no answer");
    eventually("the name to answer", Duration::from_secs(10), async || {
        let answered = h.http.get(&public).send().await;
        answered.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
}

/// Superfly docs, rate limits: about one mutation a second per action and resource, with
/// bursts of three; the next one is a 429 until the bucket refills.
#[tokio::test]
async fn quirk_mutations_are_rate_limited_per_action_and_resource() {
    let h = with_quirk(|q| {
        q.rate_limit = Some(RateLimit {
            per_second: 1,
            burst: 3,
        })
    })
    .await;
    create_app(&h, "limited").await;
    let set = json!({"values": {"A": "1"}});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            h.call("POST", "/v1/apps/limited/secrets", Some(set.clone()))
                .await
                .0,
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    assert_eq!(
        h.call("GET", "/v1/apps/limited/secrets", None).await.0,
        200,
        "reads are not limited"
    );
}

/// The token kinds whose answers are not what a friendly emulator would give: a read-only
/// token's writes are refused, and `tokens/current` refuses a token that is not a macaroon.
#[tokio::test]
async fn quirk_read_only_and_oauth_tokens() {
    let h = Harness::start().await;
    let as_token = |token: &str, method: &str, path: &str, body: Option<Value>| {
        let mut request = h
            .http
            .request(method.parse().unwrap(), h.url(path))
            .header("Authorization", format!("Bearer {token}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let app = json!({"name": "ro-app", "org_slug": "personal"});
    assert_eq!(
        as_token("sim-readonly-token", "GET", "/v1/tokens/current", None).await,
        200
    );
    assert_eq!(
        as_token("sim-readonly-token", "POST", "/v1/apps", Some(app.clone())).await,
        403
    );
    assert_eq!(
        as_token("sim-oauth-token", "GET", "/v1/tokens/current", None).await,
        401
    );
    assert_eq!(
        as_token("sim-oauth-token", "GET", "/v1/apps?org_slug=personal", None).await,
        200
    );
    assert_eq!(
        as_token("sim-oauth-token", "POST", "/v1/apps", Some(app)).await,
        201
    );
}

/// Fly, "Custom private networks": apps on separate 6PNs never reach each other over the
/// private network; a Flycast address answers its own app's network, or, when it was given a
/// network, that network alone. From elsewhere the name does not resolve: no answer.
#[tokio::test]
async fn a_flycast_name_answers_only_its_own_network() {
    let h = Harness::start().await;
    let (status, _) = h
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"name": "iso", "org_slug": "personal", "network": "tenant-a"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, app) = h.call("GET", "/v1/apps/iso", None).await;
    assert_eq!(app["network"], "tenant-a");
    let (status, _) = h
        .call(
            "POST",
            "/v1/apps/iso/machines",
            Some(json!({"region": "ams", "config": {"image": "echo", "services": [{"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}]}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = h
        .call(
            "POST",
            "/v1/apps/iso/ip_assignments",
            Some(json!({"type": "private_v6", "org_slug": "personal"})),
        )
        .await;
    assert_eq!(status, 200);
    let from = |network: &str| h.url(&format!("/net/{network}/flycast/iso/health"));
    let same = h.http.get(from("tenant-a")).send().await.unwrap();
    assert_eq!(same.status(), 200, "its own network reaches it");
    let other = match h.http.get(from("default")).send().await {
        Err(_) => true,
        Ok(response) => response.text().await.is_err(),
    };
    assert!(other, "the org's default network gets no answer");
}

/// Fly docs, Create a Machine: `skip_service_registration` is "like a combined Create and
/// Cordon"; SPEC `Machines_cordon`/`uncordon`: "the Fly Proxy won't route requests to it", and
/// then will again. flyctl's blue/green deploys rely on both.
#[tokio::test]
async fn a_cordoned_machine_is_not_routed_to() {
    let h = Harness::start().await;
    let (status, _) = h
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"name": "bg", "org_slug": "personal"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, machine) = h
        .call(
            "POST",
            "/v1/apps/bg/machines",
            Some(json!({"region": "ams", "skip_service_registration": true, "config": {"image": "echo", "services": [{"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}]}})),
        )
        .await;
    assert_eq!(status, 200);
    let id = machine["id"].as_str().unwrap().to_string();
    let (status, _) = h
        .call(
            "POST",
            "/v1/apps/bg/ip_assignments",
            Some(json!({"type": "v6"})),
        )
        .await;
    assert_eq!(status, 200);
    let public = async || {
        let response = h.http.get(h.url("/apps/bg/health")).send().await.ok()?;
        Some(response.status().as_u16())
    };
    eventually("the machine started", Duration::from_secs(10), async || {
        let (_, m) = h
            .call("GET", &format!("/v1/apps/bg/machines/{id}"), None)
            .await;
        (m["state"] == "started").then_some(())
    })
    .await;
    assert_eq!(public().await, Some(502), "created out of routing");
    let path = |verb: &str| format!("/v1/apps/bg/machines/{id}/{verb}");
    assert_eq!(h.call("POST", &path("uncordon"), None).await.0, 200);
    eventually(
        "routed after uncordon",
        Duration::from_secs(10),
        async || (public().await == Some(200)).then_some(()),
    )
    .await;
    assert_eq!(h.call("POST", &path("cordon"), None).await.0, 200);
    assert_eq!(public().await, Some(502), "cordoned: not routed");
}
