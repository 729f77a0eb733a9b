//! A world to deploy into: the sim (Fly, the channels, the model) with the real relay and vm as its machines, and the built page on another origin.

use super::*;

/// Where the page comes from. Always another origin than the Machines API, as for real users
/// (a GitHub Pages origin calling api.machines.dev), so the browser enforces the page's
/// Content-Security-Policy and preflights every Fly call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// A plain static host (like a CDN); the sim's API answers CORS for the page's origin only.
    Static,
    /// `textslash serve`, with the sim's API refusing browsers (no CORS headers at all): the
    /// page must switch to the host's forwarder.
    Forwarding,
    /// A static host, with the sim's API refusing browsers: the page can only say where to go.
    StaticRefused,
    /// A static host that holds back the rest of the page (`rest-*` files) until
    /// [`World::release_rest`]: the page's first part alone, as on a slow link.
    RestHeld,
}

/// The sim (Fly, channels) on `127.0.0.1:A` and the built page on `localhost:B`, with a
/// `config.json` naming the sim and the CSP `cargo xtask dist` would write for it.
pub struct World {
    pub handle: sim::SimHandle,
    /// The page's origin, `http://localhost:PORT`.
    pub page: String,
    pub _page_host: PageHost,
    pub _page_dir: tempfile::TempDir,
    /// Open (`true`) unless the host is [`Host::RestHeld`].
    rest_gate: tokio::sync::watch::Sender<bool>,
}

/// Dropping it stops the page's server.
pub enum PageHost {
    Static {
        _stop: tokio::sync::oneshot::Sender<()>,
    },
    Forwarding {
        _served: common::Served,
    },
}

impl std::ops::Deref for World {
    type Target = sim::SimHandle;
    fn deref(&self) -> &sim::SimHandle {
        &self.handle
    }
}

impl World {
    pub async fn start(dir: &Path, host: Host) -> World {
        let (relay, vm, _) = machine_binaries();
        let mut config = sim::SimConfig::new(dir.to_path_buf());
        config.images.rules = vec![
            ("relay".into(), sim::Program::Path(relay)),
            ("vm".into(), sim::Program::Path(vm)),
        ];
        config.machine_env = vec![
            // The real Claude Code, against the sim's scripted model.
            ("AGENT_CMD".into(), claude_bin().display().to_string()),
            // …whose Playwright MCP takes screenshots with Debian's Chromium.
            ("CHROMIUM_PATH".into(), "/usr/bin/chromium".into()),
            ("IDLE_TIMEOUT_SECS".into(), "2".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        config.wake_delay = Duration::from_millis(2500);
        // A static host's port is taken first, so the sim can allow exactly its origin.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let static_origin = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        config.cors = match host {
            Host::Static | Host::RestHeld => sim::Cors::Only(vec![static_origin.clone()]),
            Host::Forwarding | Host::StaticRefused => sim::Cors::Refuse,
        };
        let sim = sim::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let page_dir = page_for(sim.base_url());
        let (rest_gate, rest_open) = tokio::sync::watch::channel(host != Host::RestHeld);
        let (page, page_host) = match host {
            Host::Static | Host::StaticRefused | Host::RestHeld => {
                drop(listener);
                let (tx, rx) = tokio::sync::oneshot::channel();
                let listener = tokio::net::TcpListener::bind(
                    static_origin.replace("http://localhost", "127.0.0.1"),
                )
                .await
                .unwrap();
                let files = tower_http::services::ServeDir::new(page_dir.path());
                let hold_rest = axum::middleware::from_fn(
                    move |request: axum::extract::Request, next: axum::middleware::Next| {
                        let mut rest_open = rest_open.clone();
                        async move {
                            if request.uri().path().starts_with("/rest-") {
                                let _ = rest_open.wait_for(|open| *open).await;
                            }
                            next.run(request).await
                        }
                    },
                );
                tokio::spawn(async move {
                    let app = axum::Router::new().fallback_service(files).layer(hold_rest);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
                (static_origin, PageHost::Static { _stop: tx })
            }
            Host::Forwarding => {
                drop(listener);
                let served = common::textslash_serve(page_dir.path(), sim.base_url());
                // `localhost`, not the API's `127.0.0.1`: another origin.
                let origin = served.base.replace("127.0.0.1", "localhost");
                (origin, PageHost::Forwarding { _served: served })
            }
        };
        World {
            handle: sim,
            page,
            _page_host: page_host,
            _page_dir: page_dir,
            rest_gate,
        }
    }

    /// Lets the rest of the page through ([`Host::RestHeld`]).
    pub fn release_rest(&self) {
        self.rest_gate.send_replace(true);
    }
}

/// The built page (`dist/`) copied into a folder of its own, with a `config.json` naming the
/// sim at `api` and the Content-Security-Policy completed for that config.
pub fn page_for(api: &str) -> tempfile::TempDir {
    let dist = workspace().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "build the page first (cargo xtask dist)"
    );
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dist).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let config = json!({
        "api_base": api,
        "app_url": format!("{api}/apps/{{app}}"),
        "telegram_api": format!("{api}/telegram"),
        "anthropic_api": format!("{api}/anthropic"),
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let html = std::fs::read_to_string(dist.join("index.html")).unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        page_csp::complete_csp(&html, &config).unwrap(),
    )
    .unwrap();
    dir
}

pub async fn sim_state(sim: &sim::SimHandle) -> Value {
    sim.state()
}
