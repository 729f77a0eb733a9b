//! Machines as processes: start (spawn with env, secrets, `PORT`, volume), stop (kill),
//! and what happens when a process exits on its own: the machine becomes `stopped` and the
//! restart policy decides (`always` restarts, `on-failure` only after a non-zero exit,
//! `no` never), up to `restart.max_retries` in a row.

use crate::{Program, Sim};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use tokio::process::Command;
use tokio::sync::oneshot;

/// Everything needed to spawn one machine, read from the model under its lock.
struct Launch {
    program: Program,
    env: BTreeMap<String, String>,
    generation: u64,
    port: u16,
}

/// Starts the machine's process. Errors are sentences for the API's error body.
pub fn start(sim: &Arc<Sim>, app: &str, id: &str) -> Result<(), String> {
    let launch = prepare(sim, app, id)?;
    let mut running = match &launch.program {
        Program::Path(path) => {
            let mut command = Command::new(path);
            command
                .envs(&launch.env)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            Running::Child(
                command
                    .spawn()
                    .map_err(|e| format!("sim: could not start {}: {e}", path.display()))?,
            )
        }
        Program::Echo => Running::Task(tokio::spawn(crate::echo::serve(launch.env.clone()))),
    };
    let (kill_tx, kill_rx) = oneshot::channel();
    sim.world.with(|apps| {
        if let Some(m) = apps.get_mut(app).and_then(|a| a.machines.get_mut(id)) {
            m.state = "started".into();
            let source = if m.restarts > 0 { "flyd" } else { "user" };
            m.record("start", "started", source, Value::Null);
            m.port = Some(launch.port);
            m.env = launch.env.clone();
            m.kill = Some(kill_tx);
        }
    });
    let (sim, app, id, generation) = (
        sim.clone(),
        app.to_string(),
        id.to_string(),
        launch.generation,
    );
    tokio::spawn(async move {
        tokio::select! {
            code = running.wait() => exited(&sim, &app, &id, generation, code).await,
            _ = kill_rx => running.kill().await,
        }
    });
    Ok(())
}

/// `exec`: runs `command` as a process of the started machine would, with its environment
/// (secrets included, which is how flyctl's `pg` commands read one: `echo $S3_ARCHIVE_CONFIG`).
/// The image's program is its entrypoint, so a command naming a file of that name runs the
/// local program; any other command is not found in the image (exit 127, as a shell says).
pub async fn exec(
    sim: &Arc<Sim>,
    app: &str,
    id: &str,
    command: &[String],
    timeout: std::time::Duration,
) -> Result<Value, String> {
    let (state, image, env) = sim.world.with(|apps| {
        let machine = apps
            .get(app)
            .and_then(|a| a.machines.get(id))
            .ok_or("machine not found")?;
        let image = machine
            .config
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok::<_, String>((
            machine.state.clone(),
            image.to_string(),
            machine.env.clone(),
        ))
    })?;
    if state != "started" {
        return Err(format!(
            "machine is {state}, not started: start it before exec"
        ));
    }
    let named = |path: &std::path::Path| {
        path.file_name().map(|n| n.to_string_lossy().into_owned())
            == std::path::Path::new(&command[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
    };
    let program = match sim.config.images.program_for(&image) {
        Some(Program::Path(path)) if named(&path) => path,
        _ => {
            return Ok(serde_json::json!({"exit_code": 127, "stdout": "",
                "stderr": format!("exec: {}: not found\n", command[0])}));
        }
    };
    let run = Command::new(&program)
        .args(&command[1..])
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => Ok(serde_json::json!({
            "exit_code": output.status.code().unwrap_or(-1),
            "stdout": String::from_utf8_lossy(&output.stdout),
            "stderr": String::from_utf8_lossy(&output.stderr),
        })),
        Ok(Err(e)) => Err(format!("sim: could not run {}: {e}", program.display())),
        Err(_) => Err(format!("command timed out after {} s", timeout.as_secs())),
    }
}

/// A machine's process, or its in-process stand-in.
enum Running {
    Child(tokio::process::Child),
    Task(tokio::task::JoinHandle<i32>),
}

impl Running {
    /// Waits for the exit; its code (-1 for a signal or a lost process).
    async fn wait(&mut self) -> i32 {
        match self {
            Running::Child(child) => child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1),
            Running::Task(task) => task.await.unwrap_or(-1),
        }
    }

    async fn kill(self) {
        match self {
            Running::Child(mut child) => {
                let _ = child.kill().await;
            }
            Running::Task(task) => task.abort(),
        }
    }
}

fn prepare(sim: &Arc<Sim>, app_name: &str, id: &str) -> Result<Launch, String> {
    let port = free_port().map_err(|e| format!("sim: no free port: {e}"))?;
    sim.world.with(|apps| {
        let names: Vec<String> = apps.keys().cloned().collect();
        let app = apps.get_mut(app_name).ok_or("app not found")?;
        let secrets = app.secrets.clone();
        let network = app.network.clone();
        let machine = app.machines.get(id).ok_or("machine not found")?;
        let image = machine
            .config
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let program = sim.config.images.program_for(&image).ok_or_else(|| {
            format!("sim: no local program for image {image}; map one with --image")
        })?;
        let mounts: Vec<(String, String)> = machine
            .config
            .get("mounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| {
                Some((
                    m.get("path")?.as_str()?.to_string(),
                    m.get("volume")?.as_str()?.to_string(),
                ))
            })
            .collect();

        let mut env = BTreeMap::new();
        // Machines talk to the sim's fake channels unless the test or machine says otherwise.
        env.insert(
            "TELEGRAM_API_BASE".to_string(),
            format!("{}/telegram", sim.base_url),
        );
        env.insert(
            "TWILIO_API_BASE".to_string(),
            format!("{}/twilio", sim.base_url),
        );
        env.insert(
            "TWILIO_CONTENT_API_BASE".to_string(),
            format!("{}/twilio-content", sim.base_url),
        );
        env.insert(
            "DISCORD_API_BASE".to_string(),
            format!("{}/discord", sim.base_url),
        );
        env.insert(
            "DISCORD_GATEWAY_URL".to_string(),
            format!(
                "{}/discord/gateway",
                sim.base_url.replace("http://", "ws://")
            ),
        );
        // Twilio's media redirect to its CDN, which is this port under `localhost` here.
        env.insert("TWILIO_MEDIA_HOSTS".to_string(), "localhost".to_string());
        // Discord's attachments are on "its CDN", this port under `localhost`.
        env.insert("DISCORD_MEDIA_HOSTS".to_string(), "localhost".to_string());
        // …and the sim's fake Messages API, which the real Claude Code runs against offline.
        env.insert(
            "ANTHROPIC_BASE_URL".to_string(),
            format!("{}/anthropic", sim.base_url),
        );
        // A container image sets PATH (Docker's default, or its own `ENV PATH`); here the
        // "image" is a program on this host, so it gets this host's.
        if let Ok(path) = std::env::var("PATH") {
            env.insert("PATH".to_string(), path);
        }
        for (k, v) in &sim.config.machine_env {
            env.insert(k.clone(), v.clone());
        }
        if let Some(vars) = machine.config.get("env").and_then(Value::as_object) {
            for (k, v) in vars {
                env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        env.extend(secrets);
        // A machine's own root filesystem: `/var/lib/…` paths land in a folder per machine, so
        // machines never write to the host's /var/lib. Every boot gets it fresh, as on Fly: an
        // update replaces the machine's root filesystem, and "unlike stop, suspend does not
        // reset the rootfs" (docs/fly-machines-api.md §9): only volumes keep files.
        let rootfs = sim.config.data_dir.join("rootfs").join(app_name).join(id);
        let _ = std::fs::remove_dir_all(&rootfs);
        for value in env.values_mut() {
            *value = rewrite_urls(value, &names, &sim.base_url, &network);
            let mut remapped = false;
            for (path, volume) in &mounts {
                let dir = sim.config.data_dir.join("volumes").join(volume);
                if value == path || value.starts_with(&format!("{path}/")) {
                    *value = value.replacen(path.as_str(), &dir.to_string_lossy(), 1);
                    remapped = true;
                }
            }
            if !remapped && value.starts_with("/var/lib/") {
                *value = format!("{}{value}", rootfs.display());
            }
        }
        for (_, volume) in &mounts {
            let _ = std::fs::create_dir_all(sim.config.data_dir.join("volumes").join(volume));
        }
        env.insert("PORT".into(), port.to_string());
        env.insert("LISTEN_HOST".into(), "127.0.0.1".into());
        env.insert("FLY_APP_NAME".into(), app_name.into());
        env.insert("FLY_MACHINE_ID".into(), id.into());
        env.insert("FLY_REGION".into(), machine.region.clone());

        let machine = app.machines.get_mut(id).expect("looked up above");
        machine.generation += 1;
        machine.state = "starting".into();
        Ok(Launch {
            program,
            env,
            generation: machine.generation,
            port,
        })
    })
}

/// `https://<app>.fly.dev` and `http://<app>.flycast` become the sim's own routes; a Flycast
/// name is asked from the machine's private network (`from_network`), which decides whether
/// it resolves at all ([`crate::proxy`]).
pub fn rewrite_urls(value: &str, apps: &[String], base_url: &str, from_network: &str) -> String {
    let mut out = value.to_string();
    for app in apps {
        out = out
            .replace(
                &format!("https://{app}.fly.dev"),
                &format!("{base_url}/apps/{app}"),
            )
            .replace(
                &format!("http://{app}.flycast"),
                &format!("{base_url}/net/{from_network}/flycast/{app}"),
            );
    }
    out
}

async fn exited(sim: &Arc<Sim>, app: &str, id: &str, generation: u64, exit_code: i32) {
    let success = exit_code == 0;
    let restart = sim.world.with(|apps| {
        let Some(machine) = apps.get_mut(app).and_then(|a| a.machines.get_mut(id)) else {
            return false;
        };
        if machine.generation != generation {
            return false;
        }
        machine.state = "stopped".into();
        machine.port = None;
        machine.env.clear();
        machine.kill = None;
        let wanted = match machine.restart_policy().as_str() {
            "no" => false,
            "on-failure" => !success,
            _ => true,
        };
        let restarting = wanted && machine.restarts < machine.max_retries();
        if restarting {
            machine.restarts += 1;
        } else {
            machine.restarts = 0;
        }
        // fly-go `MachineExitEvent`: the exit code, and whether flyd restarts the machine.
        let exit_event = json!({"exit_event": {"exit_code": exit_code, "restarting": restarting}});
        machine.record("exit", "stopped", "flyd", exit_event);
        restarting
    });
    if restart {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if let Err(e) = start(sim, app, id) {
            tracing::warn!("restarting machine {id} of {app} failed: {e}");
        }
    }
}

/// Kills the process, if any; the machine is `stopped` when this returns.
pub fn stop(sim: &Sim, app: &str, id: &str) {
    sim.world.with(|apps| {
        if let Some(m) = apps.get_mut(app).and_then(|a| a.machines.get_mut(id)) {
            m.generation += 1;
            if let Some(kill) = m.kill.take() {
                let _ = kill.send(());
            }
            m.port = None;
            m.env.clear();
            if m.state != "stopped" {
                m.record("stop", "stopped", "user", Value::Null);
            }
            m.state = "stopped".into();
            m.restarts = 0;
        }
    });
}

/// A port free on loopback now, for a process that binds it itself.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the machine's http checks against its process, as Fly reports them in `checks[]`.
pub async fn run_checks(sim: &Sim, config: &Value, port: Option<u16>) -> Vec<Value> {
    let Some(checks) = config.get("checks").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, check) in checks {
        let path = check.get("path").and_then(Value::as_str).unwrap_or("/");
        let (status, output) = match port {
            None => ("critical", "machine is not running".to_string()),
            Some(port) => {
                let url = format!("http://127.0.0.1:{port}{path}");
                match sim
                    .http
                    .get(&url)
                    .timeout(std::time::Duration::from_secs(2))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => ("passing", format!("[✓] {}", r.status())),
                    Ok(r) => ("critical", format!("[✗] {}", r.status())),
                    Err(e) => ("critical", format!("[✗] {}", e.without_url())),
                }
            }
        };
        out.push(serde_json::json!({"name": name, "status": status, "output": output, "updated_at": crate::world::now_rfc3339()}));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fly_urls_are_rewritten_to_sim_routes() {
        let apps = vec!["a-relay".to_string(), "a-vm".to_string()];
        assert_eq!(
            super::rewrite_urls("http://a-vm.flycast", &apps, "http://127.0.0.1:9", "n1"),
            "http://127.0.0.1:9/net/n1/flycast/a-vm"
        );
        assert_eq!(
            super::rewrite_urls(
                "https://a-relay.fly.dev/callback",
                &apps,
                "http://127.0.0.1:9",
                "n1"
            ),
            "http://127.0.0.1:9/apps/a-relay/callback"
        );
        assert_eq!(
            super::rewrite_urls("https://other.fly.dev", &apps, "x", "n1"),
            "https://other.fly.dev"
        );
    }
}
