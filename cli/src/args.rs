//! Command-line arguments. Nothing here is a secret: see `secrets` for those.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "textslash",
    version,
    about = "Run your own coding agent on Fly.io and talk to it from your phone"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create (or resume creating) a deployment. As `setup` on a terminal, it asks for what
    /// is missing.
    #[command(visible_alias = "setup")]
    Deploy(DeployArgs),
    /// Print what `deploy` would create, touching nothing.
    Plan(DeployArgs),
    /// Show the live state of a deployment.
    Status(Target),
    /// Move both machines to this version's images (or the ones named), keeping the vm's
    /// volume, and say from which version to which.
    Update(UpdateArgs),
    /// Start the vm machine.
    Start(Target),
    /// Stop the vm machine (the relay stays up and wakes it on the next message).
    Stop(Target),
    /// Delete both apps and everything in them.
    Teardown(TeardownArgs),
    /// Remove a paired owner (or every one) from the relay: they become strangers again.
    Unpair(UnpairArgs),
    /// Serve the built page, forwarding its Fly calls when a browser may not make them.
    Serve(ServeArgs),
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// The built page (`cargo xtask dist` writes it to dist/).
    #[arg(long, default_value = "dist", env = "TEXTSLASH_PAGE")]
    pub page: std::path::PathBuf,
    /// Address to listen on (0.0.0.0:8080 in its Fly image).
    #[arg(long, default_value = "127.0.0.1:8080", env = "TEXTSLASH_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// The Fly Machines API the forwarder calls.
    #[arg(long, default_value = provision::spec::DEFAULT_API_BASE, env = "TEXTSLASH_API_URL")]
    pub api_url: String,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ChannelArg {
    Telegram,
    Whatsapp,
    Discord,
}

/// Which deployment, and where Fly is.
#[derive(Args, Clone)]
pub struct Target {
    /// Apps are named <prefix>-relay and <prefix>-vm.
    #[arg(long)]
    pub prefix: String,
    /// The Fly Machines API.
    #[arg(long, default_value = provision::spec::DEFAULT_API_BASE, env = "TEXTSLASH_API_URL")]
    pub api_url: String,
    /// Where apps answer publicly; {app} is replaced by the app name.
    #[arg(long, default_value = provision::spec::DEFAULT_APP_URL, env = "TEXTSLASH_APP_URL")]
    pub app_url: String,
    /// Print events and results as JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: Target,
    /// Fly region code.
    #[arg(long, default_value = "iad")]
    pub region: String,
    /// Fly org slug (default: the token's org).
    #[arg(long)]
    pub org: Option<String>,
    #[arg(long, value_enum, default_value = "telegram")]
    pub channel: ChannelArg,
    /// Who may talk to the agent: whatsapp:+15551234567, telegram:123456789 or
    /// discord:80351110224678912 (repeatable,
    /// or comma-separated).
    #[arg(long = "allow", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// The Twilio WhatsApp sender number (WhatsApp only; may also come from TWILIO_WHATSAPP_NUMBER).
    #[arg(long, env = "TWILIO_WHATSAPP_NUMBER")]
    pub whatsapp_number: Option<String>,
    #[arg(long, env = "TEXTSLASH_RELAY_IMAGE")]
    pub relay_image: Option<String>,
    #[arg(long, env = "TEXTSLASH_VM_IMAGE")]
    pub vm_image: Option<String>,
    /// Size of the vm's /data volume in GB.
    #[arg(long, default_value_t = 1)]
    pub volume_gb: u32,
    /// The most the agent may spend on Anthropic's API in a UTC day, in US dollars (0: no cap).
    #[arg(long, default_value_t = provision::spec::DEFAULT_MAX_DAILY_USD)]
    pub max_daily_usd: f64,
    /// `ask`: the agent asks you (Allow / Always allow / Deny) before it runs a command,
    /// fetches from the web or drives the browser; `auto`: it never asks. `/mode` switches
    /// a conversation later.
    #[arg(long, value_enum, default_value_t = ApprovalsArg::Ask)]
    pub approvals: ApprovalsArg,
    /// Check the Telegram bot token and the Anthropic key with Telegram and Anthropic before
    /// creating anything, as the page does (`setup` does).
    #[arg(long)]
    pub check_credentials: bool,
    /// Telegram's Bot API, for that check.
    #[arg(
        long,
        default_value = "https://api.telegram.org",
        env = "TEXTSLASH_TELEGRAM_API"
    )]
    pub telegram_api: String,
    /// Anthropic's API, for that check.
    #[arg(
        long,
        default_value = "https://api.anthropic.com",
        env = "TEXTSLASH_ANTHROPIC_API"
    )]
    pub anthropic_api: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalsArg {
    Ask,
    Auto,
}

#[derive(Args, Clone)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub target: Target,
    /// The relay's image (default: this version's). Named images may be older than the
    /// deployment's; without them an update never moves it back.
    #[arg(long, env = "TEXTSLASH_RELAY_IMAGE")]
    pub relay_image: Option<String>,
    /// The agent machine's image (default: this version's).
    #[arg(long, env = "TEXTSLASH_VM_IMAGE")]
    pub vm_image: Option<String>,
}

#[derive(Args, Clone)]
pub struct UnpairArgs {
    #[command(flatten)]
    pub target: Target,
    /// The owner to remove, as `/owners` shows it in the chat (`telegram:123456789`).
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub sender: Option<String>,
    /// Remove every paired owner (pairing cannot be armed again; add ids to ALLOWED_SENDERS).
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Clone)]
pub struct TeardownArgs {
    #[command(flatten)]
    pub target: Target,
    /// Do not ask to type the prefix to confirm.
    #[arg(long)]
    pub yes: bool,
}
