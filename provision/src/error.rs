//! One error type for everything `provision` does. Its `Display` is a sentence a user can
//! act on (the page and the CLI show it as is); it names fields and apps, never a secret.

/// What went wrong, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{field}: {problem}")]
    InvalidSpec {
        field: &'static str,
        problem: String,
    },

    #[error(
        "Fly did not accept the token. Create an org token in the Fly dashboard (your organization → \
         Tokens → create an org token) or with `fly tokens create org --expiry 720h`, and paste the \
         whole value, including `FlyV1`."
    )]
    BadToken,

    #[error(
        "Fly refused to {action} (HTTP 401), though it accepted this token a moment ago. Fly \
         answers this for a little while after it creates an app; retry in a minute and the \
         deploy resumes where it stopped. If it keeps happening, the token may have expired: \
         create a new org token (the Fly dashboard: your organization → Tokens)."
    )]
    Unauthorized { action: String },

    #[error(
        "This token may look at apps but not create them in the organization `{org}` (it is a \
         read-only token, or one for another organization). Create an org token for `{org}` in \
         the Fly dashboard (your organization → Tokens → create an org token) or with `fly \
         tokens create org --expiry 720h`. Nothing was created."
    )]
    CannotCreateApps { org: String },

    #[error(
        "This is a deploy token for {apps}: it can only manage that app, and textslash creates two \
         new ones. Create an org token instead (the Fly dashboard: your organization → Tokens)."
    )]
    AppToken { apps: String },

    #[error(
        "The token is not allowed to {action}. Use an org token (`fly tokens create org`); \
         app deploy tokens cannot create apps."
    )]
    Forbidden { action: String },

    #[error(
        "The app name `{app}` is already taken on Fly.io (names are global). Pick another prefix."
    )]
    NameTaken { app: String },

    #[error(
        "An app named `{app}` already exists in your org and is not a textslash deployment \
         (nothing in it was made by textslash). Pick another prefix; textslash will not change or \
         delete it."
    )]
    NotOurs { app: String },

    #[error(
        "`{relay}` and `{vm}` are on different private networks, so the relay cannot reach the \
         agent. Tear this deployment down and deploy it again."
    )]
    SplitNetworks { relay: String, vm: String },

    #[error(
        "Fly has no capacity for this machine in region `{region}` right now. Pick another region, or retry later."
    )]
    NoCapacity { region: String },

    #[error(
        "The image `{image}` cannot be pulled: its registry wants a login, so the package is \
         private. Make the package public in GitHub → Packages (the package → Package settings \
         → Change visibility → Public), or use the default images. The deploy stopped before \
         this machine; retry once the image can be pulled and it resumes where it stopped."
    )]
    ImagePrivate { image: String },

    #[error(
        "The image `{image}` does not exist in its registry. Check that it was built and pushed \
         (the images workflow in GitHub → Actions), or use the default images. The deploy \
         stopped before this machine; retry once the image is there and it resumes where it \
         stopped."
    )]
    ImageMissing { image: String },

    #[error(
        "Fly is rate-limiting requests. Wait a minute and retry; the deploy resumes where it stopped."
    )]
    RateLimited,

    #[error(
        "Fly's API had a problem on its side (HTTP {status}) while trying to {action}. Retry in a minute; the deploy resumes where it stopped."
    )]
    Server { status: u16, action: String },

    #[error(
        "Could not reach {host}: {detail}. Check the connection and retry; the deploy resumes where it stopped."
    )]
    Unreachable { host: String, detail: String },

    #[error(
        "Your browser refused to let this page call the Fly API at {api_base} (Fly's API may not \
         answer browsers). Open the page from a host that forwards Fly calls (`textslash serve`, \
         see the README's \"Self-host the page\"), or deploy with the `textslash` CLI."
    )]
    Blocked { api_base: String },

    #[error(
        "Fly could not start machine {machine}: {message}. Retry in a minute; if it keeps failing, \
         tear the deployment down and deploy it in another region."
    )]
    StartFailed { machine: String, message: String },

    #[error("Fly refused to {action}: {message} (HTTP {status}).")]
    Api {
        status: u16,
        action: String,
        message: String,
    },

    #[error(
        "{what} is not there any more (HTTP 404). Check the deployment's status; it may have been deleted outside textslash."
    )]
    NotFound { what: String },

    #[error(
        "This deployment runs textslash {deployed}, newer than this one ({offered}), so an update from here would move it back. Update it from textslash {deployed} or newer."
    )]
    WouldGoBack { deployed: String, offered: String },

    #[error("Timed out waiting for {what}. Retry; the deploy resumes where it stopped.")]
    Timeout { what: String },

    /// A patient wait ran out: already as long as Fly may take, so not worth repeating at once.
    #[error(
        "Waited {seconds} s for {what}, longer than Fly usually takes. Retry in a few minutes; \
         the deploy resumes where it stopped."
    )]
    GaveUpWaiting { what: String, seconds: u64 },

    #[error(
        "The relay's machine started, but {url} did not answer for {seconds} s ({detail}). A new \
         name can take a few minutes to reach every network: retry later, and the deploy \
         resumes where it stopped. If it still does not answer, open the relay app's logs in the \
         Fly dashboard."
    )]
    RelayNotAnswering {
        url: String,
        seconds: u64,
        detail: String,
    },

    #[error(
        "Could not {what}: {detail}. Check the relay app in the Fly dashboard (its machine must \
         be able to start) and retry."
    )]
    RelayCommand { what: String, detail: String },

    #[error(
        "The relay could not be moved onto its journal volume: after {seconds} s its journal \
         still held {}, which it passes to the agent machine. It keeps serving as before and \
         nothing was lost. Check that the agent machine starts (its logs in the Fly dashboard), \
         then update again.",
        match messages { Some(n) => format!("{n} message(s)"), None => "messages it did not count".into() }
    )]
    RelayStillHolds { messages: Option<u64>, seconds: u64 },

    #[error("Fly answered something unexpected while trying to {action}: {detail}")]
    BadResponse { action: String, detail: String },
}

impl Error {
    /// A failure that may go away by itself: worth another observe-then-act round.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::RateLimited
                | Error::Unauthorized { .. }
                | Error::Server { .. }
                | Error::Unreachable { .. }
                | Error::Timeout { .. }
        )
    }

    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field,
            problem: problem.into(),
        }
    }
}
