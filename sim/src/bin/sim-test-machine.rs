//! The echo machine as a process, for tests that need a real child process (see `sim::echo`).

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = std::env::vars().collect();
    std::process::exit(sim::echo::serve(env).await);
}
