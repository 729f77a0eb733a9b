//! The subcommands: each builds what it needs from the arguments and the environment, then
//! calls `provision`.

use crate::Failure;
use crate::args::{
    ApprovalsArg, ChannelArg, Cli, Command, DeployArgs, ServeArgs, Target, TeardownArgs,
    UnpairArgs, UpdateArgs,
};
use crate::render::Renderer;
use crate::secrets;
use provision::cost::dollars;
use provision::native::{ReqwestTransport, TokioClock};
use provision::spec::{Channel, DeploymentSpec, Images, Secret};
use provision::{Error, Event, FlyClient, machines, ops, plan, version};
use std::io::{BufRead, IsTerminal, Write};

type Client = FlyClient<ReqwestTransport, TokioClock>;

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Deploy(args) => deploy(args).await,
        Command::Plan(args) => show_plan(args),
        Command::Status(target) => status(target).await,
        Command::Update(args) => update(args).await,
        Command::Start(target) => set_running(target, true).await,
        Command::Stop(target) => set_running(target, false).await,
        Command::Teardown(args) => teardown(args).await,
        Command::Unpair(args) => unpair(args).await,
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    if !args.page.join("index.html").is_file() {
        return Err(Failure::Usage(format!(
            "--page: {} has no index.html; build the page with `cargo xtask dist`",
            args.page.display()
        )));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::Failed(format!("--listen {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    println!("serving {} on http://{address}/", args.page.display());
    println!(
        "forwarding /{}/v1/… to {}",
        crate::serve::FORWARD_PATH,
        args.api_url
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let serve = crate::serve::Serve {
        page: args.page,
        api_url: args.api_url,
    };
    crate::serve::run(serve, listener, shutdown)
        .await
        .map_err(|e| Failure::Failed(format!("serving: {e}")))
}

fn failed(error: Error) -> Failure {
    Failure::Failed(error.to_string())
}

fn client(target: &Target) -> Result<Client, Failure> {
    let token = secrets::required("FLY_API_TOKEN", "Fly org token")?;
    Ok(FlyClient::new(
        ReqwestTransport::new(),
        TokioClock,
        &target.api_url,
        token.expose(),
    ))
}

fn apps(target: &Target) -> (String, String, String) {
    let relay = format!("{}-relay", target.prefix);
    let vm = format!("{}-vm", target.prefix);
    let relay_url = machines::app_url(&target.app_url, &relay);
    (relay, vm, relay_url)
}

/// The spec from flags and environment. With `for_real` off (the plan), missing credentials
/// become placeholders instead of prompts.
fn spec(args: &DeployArgs, for_real: bool) -> Result<DeploymentSpec, Failure> {
    let checked_secret = |var: &str,
                          what: &str,
                          check: fn(&Secret) -> Result<(), Error>|
     -> Result<Secret, Failure> {
        if for_real {
            secrets::checked(var, what, check)
        } else {
            Ok(secrets::optional(var).unwrap_or_else(|| Secret::new("unset")))
        }
    };
    let secret = |var: &str, what: &str| -> Result<Secret, Failure> {
        checked_secret(var, what, |_| Ok(()))
    };
    let channel = match args.channel {
        ChannelArg::Telegram => Channel::Telegram {
            bot_token: checked_secret(
                "TELEGRAM_BOT_TOKEN",
                "Telegram bot token",
                provision::spec::validate_telegram_token,
            )?,
        },
        ChannelArg::Whatsapp => Channel::WhatsappTwilio {
            account_sid: secret("TWILIO_ACCOUNT_SID", "Twilio Account SID")?,
            auth_token: secret("TWILIO_AUTH_TOKEN", "Twilio auth token")?,
            whatsapp_number: args.whatsapp_number.clone().ok_or_else(|| {
                Failure::Usage(
                    "--whatsapp-number (or TWILIO_WHATSAPP_NUMBER) is needed for WhatsApp".into(),
                )
            })?,
        },
        ChannelArg::Discord => Channel::Discord {
            bot_token: checked_secret(
                "DISCORD_BOT_TOKEN",
                "Discord bot token",
                provision::spec::validate_discord_token,
            )?,
        },
    };
    let mut spec = DeploymentSpec::new(
        &args.target.prefix,
        &args.region,
        channel,
        secret("ANTHROPIC_API_KEY", "Anthropic API key")?,
    );
    spec.org = args.org.clone();
    spec.allowed_senders = args
        .allow
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    spec.github_token = secrets::optional("GITHUB_TOKEN");
    let defaults = Images::default();
    spec.images = Images {
        relay: args.relay_image.clone().unwrap_or(defaults.relay),
        vm: args.vm_image.clone().unwrap_or(defaults.vm),
    };
    spec.volume_gb = args.volume_gb;
    spec.max_daily_usd = (args.max_daily_usd != 0.0).then_some(args.max_daily_usd);
    spec.approvals = match args.approvals {
        ApprovalsArg::Ask => provision::spec::Approvals::Ask,
        ApprovalsArg::Auto => provision::spec::Approvals::Auto,
    };
    spec.app_url = args.target.app_url.clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // An owner given by id needs no pairing: a code nobody uses would only be a way in.
    if spec.allowed_senders.is_empty() {
        spec.pairing = Some(provision::spec::Pairing::new(now_ms));
    }
    Ok(spec)
}

async fn deploy(args: DeployArgs) -> Result<(), Failure> {
    let spec = spec(&args, true)?;
    spec.validate().map_err(|e| Failure::Usage(e.to_string()))?;
    let bot_name = if args.check_credentials {
        check_credentials(&args, &spec).await?
    } else {
        None
    };
    let fly = client(&args.target)?;
    let renderer = Renderer::new(args.target.json);
    // The pairing code is this run's only if this run set the secrets (a resumed run finds
    // them set, with an earlier run's code).
    let secrets_set_now = std::cell::Cell::new(false);
    let result = plan::deploy(&fly, &spec, &|e: &Event| {
        if e.step == provision::StepId::Secrets && e.state == provision::StepState::Done {
            secrets_set_now.set(true);
        }
        renderer.event(e)
    })
    .await;
    let deployment = result.map_err(|e| {
        Failure::Failed(format!("{e}\nRun the same command again to resume; `textslash teardown --prefix {}` undoes it.", spec.prefix))
    })?;
    let pairing_json = spec
        .pairing
        .as_ref()
        .filter(|_| secrets_set_now.get())
        .map(|p| serde_json::json!({"code": p.code.expose(), "expires_ms": p.expires_ms}));
    renderer.result(&serde_json::json!({ "deployment": deployment, "api_calls": fly.calls(), "pairing": pairing_json }), || {
        let mut text = format!(
            "\nDeployed {} and {} in {}.\nRelay: {}\n",
            deployment.relay_app, deployment.vm_app, deployment.region, deployment.relay_url
        );
        let pairing = spec.pairing.as_ref().filter(|_| secrets_set_now.get());
        text.push_str(&next_steps(&spec, &deployment, pairing, bot_name.as_deref()));
        text
    });
    Ok(())
}

/// The bot token (Telegram) and the Anthropic key tried with their services before anything
/// is created, as the page does (`provision::checks`); the bot's `@name` when there is one.
async fn check_credentials(
    args: &DeployArgs,
    spec: &DeploymentSpec,
) -> Result<Option<String>, Failure> {
    let http = ReqwestTransport::new();
    let bot_name = match &spec.channel {
        Channel::Telegram { bot_token } => Some(
            provision::checks::telegram_bot(&http, &args.telegram_api, bot_token)
                .await
                .map_err(Failure::Usage)?,
        ),
        _ => None,
    };
    provision::checks::anthropic_key(&http, &args.anthropic_api, &spec.anthropic_api_key)
        .await
        .map_err(Failure::Usage)?;
    Ok(bot_name)
}

/// What the user does next on their channel, and how they pair their phone (when this run
/// set the pairing code): with the bot's name (when it was checked), Telegram's pairing link.
fn next_steps(
    spec: &DeploymentSpec,
    deployment: &provision::Deployment,
    pairing: Option<&provision::spec::Pairing>,
    bot_name: Option<&str>,
) -> String {
    let webhook = &deployment.webhook_url;
    let mut text = match &spec.channel {
        Channel::WhatsappTwilio { .. } => format!(
            "Webhook URL: {webhook}\nPaste it in Twilio: Messaging → WhatsApp sender → \"When a message comes in\" (HTTP POST).\n"
        ),
        Channel::Telegram { .. } => {
            format!("Webhook URL: {webhook}\nThe relay registers it with Telegram itself.\n")
        }
        Channel::Discord { bot_token } => format!(
            "The relay connects to Discord itself. Add the bot to a server of yours (a private one will do):\n  {}\n",
            provision::spec::discord_invite_url(bot_token).unwrap_or_default()
        ),
    };
    let Some(pairing) = pairing else {
        text.push_str("Send your bot a message now.\n");
        return text;
    };
    let code = pairing.code.expose();
    text.push_str(&match &spec.channel {
        Channel::Telegram { .. } if let Some(bot) = bot_name => format!(
            "Pair your phone: open\n  {}\nand tap Start. The first sender of this code becomes the owner; it works once, for an hour.\n",
            pairing.link(&provision::spec::PairingTarget::Telegram {
                bot_username: bot.to_string()
            })
        ),
        Channel::Telegram { .. } => format!(
            "Pair your phone: open your bot in Telegram and send\n  /start {code}\n(or open https://t.me/<your bot>?start={code}). The first sender of this code becomes the owner; it works once, for an hour.\n"
        ),
        Channel::WhatsappTwilio { whatsapp_number, .. } => format!(
            "Pair your phone: open {}\nand send the prefilled message. The first sender of this code becomes the owner; it works once, for an hour.\n",
            pairing.link(&provision::spec::PairingTarget::Whatsapp {
                number: provision::spec::normalise_phone(whatsapp_number).unwrap_or_default()
            })
        ),
        Channel::Discord { .. } => format!(
            "Pair: send the bot a direct message with the code\n  {code}\nThe first sender of this code becomes the owner; it works once, for an hour.\n"
        ),
    });
    text
}

fn show_plan(args: DeployArgs) -> Result<(), Failure> {
    let spec = spec(&args, false)?;
    provision::spec::validate_prefix(&spec.prefix).map_err(|e| Failure::Usage(e.to_string()))?;
    provision::spec::validate_region(&spec.region).map_err(|e| Failure::Usage(e.to_string()))?;
    let estimate = provision::cost::estimate(&spec, 2.0);
    let relay_secrets: Vec<String> = machines::relay_secrets(&spec, "", "").into_keys().collect();
    let vm_secrets: Vec<String> = machines::vm_secrets(&spec, "").into_keys().collect();
    let relay = machines::relay_config(&spec, "<new volume>");
    let vm = machines::vm_config(&spec, "<new volume>");
    let plan = serde_json::json!({
        "apps": [spec.relay_app(), spec.vm_app()],
        "steps": provision::StepId::ALL.iter().map(|s| s.title()).collect::<Vec<_>>(),
        "relay": {"machine": relay, "secrets": relay_secrets, "volume_gb": machines::RELAY_VOLUME_GB, "ips": ["v6", "shared_v4"]},
        "vm": {"machine": vm, "secrets": vm_secrets, "volume_gb": spec.volume_gb, "ips": ["private_v6"]},
        "monthly_cost_usd": estimate,
    });
    let renderer = Renderer::new(args.target.json);
    renderer.result(&plan, || {
        let mut text = format!("textslash deploy would, in {} (touching nothing now):\n", spec.region);
        for (i, step) in provision::StepId::ALL.iter().enumerate() {
            text.push_str(&format!("  {:>2}. {}\n", i + 1, step.title()));
        }
        text.push_str(&format!(
            "\n  {}: {} cpu {} MB, public HTTPS, always on; secrets {}\n  {}: {} cpu {} MB, Flycast only, stops when idle, {} GB volume at /data; secrets {}\n",
            spec.relay_app(), spec.relay_guest.cpus, spec.relay_guest.memory_mb, relay_secrets.join(", "),
            spec.vm_app(), spec.vm_guest.cpus, spec.vm_guest.memory_mb, spec.volume_gb, vm_secrets.join(", "),
        ));
        text.push_str(&format!(
            "\n  Estimated cost: ${}/month (relay ${}, vm ${} at {} h/day, stopped vm ${}, volume ${}).",
            dollars(estimate.total), dollars(estimate.relay), dollars(estimate.vm_running), estimate.vm_hours_per_day, dollars(estimate.vm_stopped), dollars(estimate.volume)
        ));
        text
    });
    Ok(())
}

async fn status(target: Target) -> Result<(), Failure> {
    let fly = client(&target)?;
    let (relay, vm, relay_url) = apps(&target);
    let status = ops::status(&fly, &relay, &vm, &relay_url)
        .await
        .map_err(failed)?;
    Renderer::new(target.json).result(&status, || {
        let mut text = String::new();
        for app in [&status.relay, &status.vm] {
            if !app.exists {
                text.push_str(&format!("{}: does not exist\n", app.name));
                continue;
            }
            text.push_str(&format!("{}:\n", app.name));
            for m in &app.machines {
                text.push_str(&format!(
                    "  machine {} {}, {}\n",
                    m.id,
                    m.summary(),
                    m.image_shown(),
                ));
            }
            for v in &app.volumes {
                text.push_str(&format!("  volume {} {} GB {}\n", v.id, v.size_gb, v.state));
            }
            for ip in &app.ips {
                text.push_str(&format!("  ip {ip}\n"));
            }
        }
        match &status.relay_health {
            Ok(health) => text.push_str(&format!("relay health: ok {health}")),
            Err(e) => text.push_str(&format!("relay health: {e}")),
        }
        if status.shares_org_network() {
            text.push_str(&format!("\n{}", ops::SHARED_NETWORK));
        }
        if status.relay.exists || status.vm.exists {
            let update = format!("run `textslash update --prefix {}`", target.prefix);
            let standing = status.standing(&Images::default());
            text.push_str(&format!("\n{}", standing.sentence(&update)));
        }
        text
    });
    Ok(())
}

async fn update(args: UpdateArgs) -> Result<(), Failure> {
    let fly = client(&args.target)?;
    let (relay, vm, relay_url) = apps(&args.target);
    // Images named on the command line are the user's choice, even an older version's.
    let named = args.relay_image.is_some() || args.vm_image.is_some();
    let defaults = Images::default();
    let images = Images {
        relay: args.relay_image.unwrap_or(defaults.relay),
        vm: args.vm_image.unwrap_or(defaults.vm),
    };
    let renderer = Renderer::new(args.target.json);
    let changed = ops::update(
        &fly,
        &relay,
        &vm,
        &relay_url,
        &images,
        named,
        &|e: &Event| renderer.event(e),
    )
    .await
    .map_err(failed)?;
    renderer.result(&serde_json::json!({ "updated": changed }), || {
        version::describe_update(&changed, &images)
    });
    Ok(())
}

async fn set_running(target: Target, running: bool) -> Result<(), Failure> {
    let fly = client(&target)?;
    let (_, vm, _) = apps(&target);
    ops::set_vm_running(&fly, &vm, running)
        .await
        .map_err(failed)?;
    Renderer::new(target.json).result(&serde_json::json!({ "vm": vm, "running": running }), || {
        format!("{vm} {}", if running { "started" } else { "stopped" })
    });
    Ok(())
}

async fn unpair(args: UnpairArgs) -> Result<(), Failure> {
    let fly = client(&args.target)?;
    let (relay, _, _) = apps(&args.target);
    let removed = ops::unpair(&fly, &relay, args.sender.as_deref())
        .await
        .map_err(failed)?;
    Renderer::new(args.target.json).result(&serde_json::json!({ "removed": removed }), || {
        if removed.is_empty() {
            "No paired owner was removed (owners in ALLOWED_SENDERS are the relay app's settings)."
                .into()
        } else {
            format!(
                "Removed: {}. They are strangers to the agent now.",
                removed.join(", ")
            )
        }
    });
    Ok(())
}

async fn teardown(args: TeardownArgs) -> Result<(), Failure> {
    let target = &args.target;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::Usage(
                "teardown deletes everything; pass --yes when not on a terminal".into(),
            ));
        }
        eprint!(
            "This deletes {p}-relay and {p}-vm with their volume. Type the prefix to confirm: ",
            p = target.prefix
        );
        let _ = std::io::stderr().flush();
        let mut typed = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut typed)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        if typed.trim() != target.prefix {
            return Err(Failure::Usage(
                "the prefix did not match; nothing was deleted".into(),
            ));
        }
    }
    let fly = client(target)?;
    let (relay, vm, _) = apps(target);
    let renderer = Renderer::new(target.json);
    let leftovers = ops::teardown(&fly, &[&relay, &vm], &|e: &Event| renderer.event(e))
        .await
        .map_err(failed)?;
    let (for_you, on_fly): (Vec<_>, Vec<_>) = leftovers.iter().partition(|l| l.outside_fly);
    renderer.result(&serde_json::json!({ "leftovers": leftovers }), || {
        let mut text = if on_fly.is_empty() {
            format!("Removed {relay} and {vm}; nothing is left.")
        } else {
            let lines: Vec<String> = on_fly
                .iter()
                .map(|l| format!("  {}: {}", l.what, l.why))
                .collect();
            format!("Some things are left over:\n{}", lines.join("\n"))
        };
        for leftover in &for_you {
            text.push_str(&format!(
                "\nStill to do: {}: {}",
                leftover.what, leftover.why
            ));
        }
        text
    });
    if on_fly.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(
            "teardown left resources behind (listed above)".into(),
        ))
    }
}
