//! Running programs: every command is echoed, its failure names it, and test output is
//! scanned for libtest's `test result:` lines so the final summary can add them up.

use anyhow::{Context, bail};
use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

thread_local! {
    /// Where this thread's commands and step headers go instead of the terminal.
    static LOG: RefCell<Option<File>> = const { RefCell::new(None) };
}

/// Sends what [`run`] and [`Timings`] print on this thread (commands, their output, step
/// headers) to a new file at `path` instead of the terminal. Installs that run beside the
/// test steps write there, so their output does not interleave with the steps'.
pub fn log_this_thread_to(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    LOG.with(|log| *log.borrow_mut() = Some(file));
    Ok(())
}

/// Prints `line` to this thread's log, or to the terminal when it has none.
fn say(line: &str) {
    LOG.with(|log| match log.borrow_mut().as_mut() {
        Some(file) => {
            let _ = writeln!(file, "{line}");
        }
        None => println!("{line}"),
    })
}

/// Runs `command` to completion, inheriting the terminal (or writing to this thread's log);
/// a non-zero exit is an error.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = show(command);
    say(&format!("$ {shown}"));
    LOG.with(|log| -> anyhow::Result<()> {
        if let Some(file) = log.borrow().as_ref() {
            command.stdout(file.try_clone()?).stderr(file.try_clone()?);
        }
        Ok(())
    })?;
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its standard output (trimmed), or `None` if it cannot start or
/// fails; used to ask tools for their versions.
pub fn output(command: &mut Command) -> Option<String> {
    let out = command.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Passed/failed/ignored totals from libtest-style output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl TestCounts {
    pub fn add(&mut self, other: TestCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    /// Reads one line such as `test result: ok. 6 passed; 0 failed; 1 ignored; ...`.
    pub fn parse_line(line: &str) -> Option<TestCounts> {
        let rest = line.trim().strip_prefix("test result: ")?;
        let mut counts = TestCounts::default();
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(number), Some(label)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => counts.passed = number,
                "failed" => counts.failed = number,
                "ignored" => counts.ignored = number,
                _ => {}
            }
        }
        Some(counts)
    }
}

/// Runs a test command, echoing its output live, and returns the totals it reported.
/// A non-zero exit is an error even when no `test result` line was printed (a build failure).
pub fn run_tests(command: &mut Command) -> anyhow::Result<TestCounts> {
    let shown = show(command);
    println!("$ {shown}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let mut totals = TestCounts::default();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(counts) = TestCounts::parse_line(&line) {
            totals.add(counts);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`{shown}` failed ({status}): {} passed, {} failed",
            totals.passed,
            totals.failed
        );
    }
    Ok(totals)
}

fn show(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// How long each step took, printed at the end so slow installs are visible.
#[derive(Default)]
pub struct Timings {
    steps: Vec<(String, Duration, &'static str)>,
}

impl Timings {
    /// Runs `step`, recording its time under `name`.
    pub fn time<T>(
        &mut self,
        name: &str,
        step: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        say(&format!("\n== {name}"));
        let started = Instant::now();
        let result = step();
        self.steps.push((
            name.to_string(),
            started.elapsed(),
            if result.is_ok() { "ok" } else { "FAILED" },
        ));
        result
    }

    /// Records that `name` was already in place.
    pub fn skipped(&mut self, name: &str) {
        say(&format!("== {name}: already present, skipped"));
        self.steps
            .push((name.to_string(), Duration::ZERO, "skipped"));
    }

    /// Adds the steps a background thread timed, marked so that no one adds their time to the
    /// wall-clock total: they overlapped the steps around them.
    pub fn merge_background(&mut self, other: Timings) {
        self.steps.extend(
            other.steps.into_iter().map(|(name, took, outcome)| {
                (format!("(in the background) {name}"), took, outcome)
            }),
        );
    }

    pub fn print(&self) {
        println!("\nsteps:");
        for (name, took, outcome) in &self.steps {
            println!("  {outcome:>7}  {:>7.1}s  {name}", took.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TestCounts, Timings, log_this_thread_to, run};
    use std::process::Command;

    #[test]
    fn a_thread_with_a_log_writes_there_and_other_threads_do_not() {
        let dir = std::env::temp_dir().join(format!("xtask-log-{}", std::process::id()));
        let log = dir.join("install.log");
        let logged = log.clone();
        std::thread::spawn(move || {
            log_this_thread_to(&logged).unwrap();
            Timings::default()
                .time("a background step", || {
                    run(Command::new("sh").args(["-c", "echo to-stdout; echo to-stderr >&2"]))
                })
                .unwrap();
        })
        .join()
        .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for expected in ["== a background step", "$ sh -c", "to-stdout", "to-stderr"] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from {text:?}"
            );
        }
        // This thread never set a log, so its commands still go to the terminal.
        super::LOG.with(|log| assert!(log.borrow().is_none()));
    }

    #[test]
    fn reads_libtest_result_lines() {
        let line = "test result: FAILED. 6 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.41s";
        assert_eq!(
            TestCounts::parse_line(line),
            Some(TestCounts {
                passed: 6,
                failed: 2,
                ignored: 1
            })
        );
        assert_eq!(TestCounts::parse_line("running 3 tests"), None);
    }
}
