//! Process plumbing both services share: reading the
//! environment with errors that name the variable (never its value), logging, the listen
//! address, the shutdown signal, and what can stop a start.

/// A configuration problem: which variable, and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(var: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            var,
            problem: problem.into(),
        }
    }
}

/// Environment lookups through `var` (the process environment in `main`, a map in tests).
/// Blank values count as unset.
pub struct Env<F> {
    var: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(var: F) -> Self {
        Env { var }
    }

    pub fn get(&self, name: &'static str) -> Option<String> {
        (self.var)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| ConfigError::new(name, "is required"))
    }

    pub fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::new(name, "must be a whole number")),
        }
    }

    pub fn port(&self) -> Result<u16, ConfigError> {
        u16::try_from(self.number("PORT", 8080)?)
            .map_err(|_| ConfigError::new("PORT", "must be a port number"))
    }
}

/// `value` without a trailing slash, if it is an http(s) URL.
pub fn http_url(name: &'static str, value: String) -> Result<String, ConfigError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.trim_end_matches('/').to_string())
    } else {
        Err(ConfigError::new(name, "must be an http:// or https:// URL"))
    }
}

/// Why a service could not start (or stopped serving), for `main` to print.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATA_DIR: cannot create or use the folder: {0}")]
    DataDir(std::io::Error),
    /// The service's SQLite file (the relay's journal, the vm's store).
    #[error(transparent)]
    Storage(Box<dyn std::error::Error + Send + Sync>),
    #[error("PORT: cannot listen on {port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

impl StartError {
    pub fn storage(error: impl std::error::Error + Send + Sync + 'static) -> StartError {
        StartError::Storage(Box::new(error))
    }
}

/// Listens on `port` at [`listen_host`].
pub async fn bind(port: u16) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind((listen_host(), port))
        .await
        .map_err(|source| StartError::Listen { port, source })
}

/// Logs to stderr at `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Fly routes to 0.0.0.0; the sim sets `LISTEN_HOST=127.0.0.1` so local machines stay on loopback.
pub fn listen_host() -> String {
    std::env::var("LISTEN_HOST").unwrap_or_else(|_| "0.0.0.0".into())
}

/// SIGTERM (Fly stopping the machine) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
