//! `deploy/fly/*.toml` (for people who deploy with flyctl) must describe the same machines the
//! page and the CLI create: services, ports, checks, restart policy, mounts, sizes, env. And
//! everything that names a version (Cargo, the npm packages, the page's config.json, the
//! workflows that build images and releases, the installer) names the same one.

use provision::machines::{relay_config, vm_config};
use provision::spec::Secret;
use provision::{Channel, DeploymentSpec};
use toml::Value;

fn spec() -> DeploymentSpec {
    let mut spec = DeploymentSpec::new(
        "PREFIX",
        "iad",
        Channel::Telegram {
            bot_token: Secret::new("1:x"),
        },
        Secret::new("sk-ant-x"),
    );
    spec.allowed_senders = vec!["telegram:123456789".into()];
    spec
}

fn template(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/fly")
        .join(name);
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_agrees(toml: &Value, config: &provision::fly::types::MachineConfig) {
    assert_eq!(toml["build"]["image"].as_str(), Some(config.image.as_str()));
    let env: std::collections::BTreeMap<String, String> = toml["env"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(env, config.env, "env");

    let [service] = &config.services[..] else {
        panic!("one service")
    };
    let services = toml["services"].as_array().unwrap();
    assert_eq!(services.len(), 1);
    let s = &services[0];
    assert_eq!(s["protocol"].as_str(), Some(service.protocol.as_str()));
    assert_eq!(
        s["internal_port"].as_integer(),
        Some(i64::from(service.internal_port))
    );
    assert_eq!(
        s["auto_stop_machines"].as_str(),
        service.autostop.map(|a| a.as_str())
    );
    assert_eq!(s["auto_start_machines"].as_bool(), service.autostart);
    assert_eq!(
        s["min_machines_running"].as_integer(),
        service.min_machines_running.map(i64::from)
    );
    let ports: Vec<(i64, Vec<String>, bool)> = s["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let handlers = p["handlers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            (
                p["port"].as_integer().unwrap(),
                handlers,
                p.get("force_https")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            )
        })
        .collect();
    let expected: Vec<(i64, Vec<String>, bool)> = service
        .ports
        .iter()
        .map(|p| {
            (
                i64::from(p.port),
                p.handlers.clone(),
                p.force_https.unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(ports, expected, "ports");

    let checks = toml["checks"].as_table().unwrap();
    assert_eq!(checks.len(), config.checks.len());
    for (name, check) in &config.checks {
        let t = &checks[name];
        assert_eq!(t["type"].as_str(), Some(check.kind.as_str()));
        assert_eq!(t["port"].as_integer(), Some(i64::from(check.port)));
        assert_eq!(t["method"].as_str(), check.method.as_deref());
        assert_eq!(t["path"].as_str(), check.path.as_deref());
        assert_eq!(t["interval"].as_str(), check.interval.as_deref());
        assert_eq!(t["timeout"].as_str(), check.timeout.as_deref());
        assert_eq!(t["grace_period"].as_str(), check.grace_period.as_deref());
    }

    let restart = config.restart.as_ref().unwrap();
    let r = &toml["restart"].as_array().unwrap()[0];
    assert_eq!(r["policy"].as_str(), Some(restart.policy.as_str()));
    assert_eq!(
        r.get("retries").and_then(Value::as_integer),
        restart.max_retries.map(i64::from)
    );

    let guest = config.guest.as_ref().unwrap();
    let vm = &toml["vm"].as_array().unwrap()[0];
    assert_eq!(
        vm["size"].as_str().unwrap(),
        format!("{}-cpu-{}x", guest.cpu_kind, guest.cpus)
    );
    let memory = vm["memory"].as_str().unwrap();
    let memory_mb = match memory.strip_suffix("gb") {
        Some(gb) => gb.parse::<u32>().unwrap() * 1024,
        None => memory.strip_suffix("mb").unwrap().parse().unwrap(),
    };
    assert_eq!(memory_mb, guest.memory_mb);

    match (toml.get("mounts"), &config.mounts[..]) {
        (None, []) => {}
        (Some(m), [mount]) => assert_eq!(m["destination"].as_str(), Some(mount.path.as_str())),
        other => panic!("mounts disagree: {other:?}"),
    }
}

#[test]
fn relay_template_matches_the_machine_config() {
    let toml = template("relay.toml");
    assert_agrees(&toml, &relay_config(&spec(), "vol_x"));
    assert_eq!(
        toml["mounts"]["initial_size"].as_str(),
        Some(format!("{}gb", provision::machines::RELAY_VOLUME_GB).as_str())
    );
}

#[test]
fn vm_template_matches_the_machine_config() {
    let spec = spec();
    let toml = template("vm.toml");
    assert_agrees(&toml, &vm_config(&spec, "vol_x"));
    assert_eq!(
        toml["mounts"]["initial_size"].as_str(),
        Some(format!("{}gb", spec.volume_gb).as_str())
    );
}

/// Every place that names the images names this version's (the workspace's), never `latest`:
/// a page or CLI of one version deploys the images of that version.
#[test]
fn every_image_reference_is_this_version_s() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let images = provision::spec::Images::default();
    for image in [&images.relay, &images.vm] {
        assert!(image.ends_with(&format!(":{version}")), "{image}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&read("wizard-wasm/public/config.json")).unwrap();
    assert_eq!(config["images"]["relay"], images.relay.as_str());
    assert_eq!(config["images"]["vm"], images.vm.as_str());
    for name in ["relay", "vm", "serve"] {
        let toml = template(&format!("{name}.toml"));
        assert_eq!(
            toml["build"]["image"].as_str(),
            Some(format!("ghcr.io/textslash/textslash-{name}:{version}").as_str())
        );
    }
    // What builds a config.json elsewhere takes the version from Cargo.toml, and so do the
    // images' own tags.
    for path in [".github/workflows/pages.yml", "deploy/serve.Dockerfile"] {
        let text = read(path);
        assert!(!text.contains(":latest"), "{path} names `latest`");
        assert!(
            text.contains("Cargo.toml"),
            "{path} does not read the version"
        );
    }
    let images = read(".github/workflows/images.yml");
    assert!(images.contains("steps.version.outputs.version"));
    assert!(!images.contains("value=latest"), "images.yml tags `latest`");
    // The published page names the digest images.yml just pushed (read after it has run).
    let pages = read(".github/workflows/pages.yml");
    assert!(pages.contains("workflows: [images]") && pages.contains("imagetools inspect"));
}

/// One version for the CLI, the page, the npm packages and the images; the release builds
/// what the installers fetch.
#[test]
fn cargo_npm_the_page_and_the_workflows_agree_on_one_version() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(provision::version::VERSION, version);

    // npm: the launcher package and every platform package it depends on.
    let npm: serde_json::Value = serde_json::from_str(&read("npm/textslash/package.json")).unwrap();
    assert_eq!(npm["version"], version);
    let platforms = npm["optionalDependencies"].as_object().unwrap();
    for (name, wanted) in platforms {
        assert_eq!(wanted, version, "{name}");
    }

    // The release (dist) builds one archive per target, and npm has a package for each.
    let dist: Value = toml::from_str(&read("dist-workspace.toml")).unwrap();
    let targets: Vec<&str> = dist["dist"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for target in &targets {
        let cpu = if target.starts_with("x86_64") {
            "x64"
        } else {
            "arm64"
        };
        let os = if target.contains("linux") {
            "linux"
        } else if target.contains("darwin") {
            "darwin"
        } else {
            "win32"
        };
        assert!(
            platforms
                .keys()
                .any(|name| name.ends_with(&format!("-{os}-{cpu}"))),
            "no npm package for {target}"
        );
    }
    assert_eq!(
        platforms.len(),
        targets.len(),
        "an npm package without a build"
    );
    let release = read(".github/workflows/release.yml");
    assert!(
        release.contains("autogenerated by dist"),
        "release.yml is dist's"
    );
    assert!(
        release.contains(&format!(
            "cargo-dist/releases/download/v{}/",
            dist["dist"]["cargo-dist-version"].as_str().unwrap()
        )),
        "release.yml was generated by the dist version dist-workspace.toml names"
    );

    // install.sh fetches the archives dist makes, for the Unix targets it releases.
    assert_eq!(dist["dist"]["unix-archive"].as_str(), Some(".tar.gz"));
    let installer = read("install.sh");
    assert!(installer.contains(r#"archive="textslash-${target}.tar.gz""#));
    for target in ["unknown-linux-musl", "apple-darwin"] {
        assert!(installer.contains(target));
        for arch in ["x86_64", "aarch64"] {
            assert!(
                targets.contains(&format!("{arch}-{target}").as_str()),
                "{arch}-{target}"
            );
        }
    }
}
