//! `/diff`: what the agent changed in a conversation's workspace, as one unified diff.
//!
//! - Every git repository in the workspace (up to three folders down): its working tree
//!   against its `HEAD`, and its untracked files as new files.
//! - Everything else: against a baseline the vm records when the conversation's session
//!   starts, in a repository of its own outside the workspace's folders (a "shadow" git
//!   directory whose work tree is the workspace, the nested repositories and build output
//!   excluded).
//!
//! git runs as the agent ([`crate::fence::AgentUser::confine`]), with an environment of its
//! own: a repository's config is the agent's to write and can name programs (an fsmonitor, a
//! diff driver), so nothing here may run with the vm's rights. External diff drivers and text
//! conversions are off, and the output is capped.

use crate::config::Config;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The most diff text kept; beyond it the diff says it was cut.
const MAX_DIFF_BYTES: usize = 8 * 1024 * 1024;
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Left out of the baseline: dependencies and build output, which the agent did not write
/// by hand and which would make every diff huge.
const NOT_TRACKED: &[&str] = &[
    "node_modules/",
    "target/",
    ".venv/",
    "__pycache__/",
    "dist/",
    "build/",
    "attachments/",
];

/// A diff and its size in a line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub text: String,
    pub files: usize,
    pub added: usize,
    pub removed: usize,
}

impl Changes {
    fn from_text(text: String) -> Changes {
        let mut changes = Changes::default();
        for line in text.lines() {
            if line.starts_with("diff --git ") {
                changes.files += 1;
            } else if line.starts_with('+') && !line.starts_with("+++ ") {
                changes.added += 1;
            } else if line.starts_with('-') && !line.starts_with("--- ") {
                changes.removed += 1;
            }
        }
        changes.text = text;
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.files == 0
    }

    /// What tells two states of the workspace apart: the diff's length and its SipHash (std's
    /// `DefaultHasher`, stable within one build, so a new vm version may repeat a summary once).
    pub fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.text.hash(&mut hasher);
        format!("{}:{:016x}", self.text.len(), hasher.finish())
    }

    /// "3 files changed, +120 −14".
    pub fn summary(&self) -> String {
        format!(
            "{} file{} changed, +{} −{}",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.added,
            self.removed
        )
    }
}

/// Where the conversation's baseline lives: under the agent's home, not in the workspace.
fn shadow_dir(config: &Config, workspace: &Path) -> PathBuf {
    let name = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    config
        .data_dir
        .join("home/.textslash-baselines")
        .join(format!("{name}.git"))
}

/// Records the workspace's files outside git as they are now, unless a baseline exists
/// (a session's first job records it; `/new` forgets it).
pub async fn record_baseline(config: &Config, workspace: &Path) {
    let shadow = shadow_dir(config, workspace);
    if shadow.exists() {
        return;
    }
    let _ = std::fs::create_dir_all(workspace);
    if let Some(agent) = &config.agent_user {
        let _ = agent.give(workspace);
    }
    let commands: [&[&str]; 3] = [
        &["init", "-q"],
        &["add", "-A"],
        &[
            "-c",
            "user.name=textslash",
            "-c",
            "user.email=textslash@localhost",
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            "baseline",
        ],
    ];
    let _ = std::fs::create_dir_all(&shadow);
    for (i, args) in commands.iter().enumerate() {
        if i == 1 {
            write_excludes(&shadow, workspace);
        }
        if shadow_git(config, workspace, &shadow, args).await.is_none() {
            tracing::warn!("could not record the workspace's baseline for /diff");
            // Half a baseline is none: the next job tries again.
            let _ = std::fs::remove_dir_all(&shadow);
            return;
        }
    }
}

/// Forgets the baseline (`/new`): the next session records its own.
pub fn forget_baseline(config: &Config, workspace: &Path) {
    let _ = std::fs::remove_dir_all(shadow_dir(config, workspace));
}

/// Everything the agent changed in `workspace` since the baseline and each repository's HEAD.
pub async fn changes(config: &Config, workspace: &Path) -> Changes {
    let mut text = String::new();
    for repo in repositories(workspace) {
        let relative = repo
            .strip_prefix(workspace)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `a/proj/x` and `b/proj/x`: paths from the workspace, as in the shadow's diff.
        let prefix = |side: &str, letter: &str| {
            if relative.is_empty() {
                format!("--{side}-prefix={letter}/")
            } else {
                format!("--{side}-prefix={letter}/{relative}/")
            }
        };
        let (src, dst) = (prefix("src", "a"), prefix("dst", "b"));
        let diff_args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv"];
        let tracked = git(
            config,
            &repo,
            &[&diff_args[..], &[&src, &dst, "HEAD"]].concat(),
            &[],
        )
        .await;
        text.push_str(&tracked.unwrap_or_default());
        let untracked = git(
            config,
            &repo,
            &["ls-files", "--others", "--exclude-standard", "-z"],
            &[],
        )
        .await
        .unwrap_or_default();
        for file in untracked.split('\0').filter(|f| !f.is_empty()) {
            let added = git(
                config,
                &repo,
                &[
                    &diff_args[..],
                    &[&src, &dst, "--no-index", "--", "/dev/null", file],
                ]
                .concat(),
                &[],
            )
            .await;
            text.push_str(&added.unwrap_or_default());
        }
    }
    let shadow = shadow_dir(config, workspace);
    if shadow.exists() {
        write_excludes(&shadow, workspace);
        if shadow_git(config, workspace, &shadow, &["add", "-A"])
            .await
            .is_some()
        {
            let outside = shadow_git(
                config,
                workspace,
                &shadow,
                &[
                    "diff",
                    "--cached",
                    "--no-color",
                    "--no-ext-diff",
                    "--no-textconv",
                    "HEAD",
                ],
            )
            .await;
            text.push_str(&outside.unwrap_or_default());
        }
    }
    if text.len() > MAX_DIFF_BYTES {
        let cut = text.floor_char_boundary(MAX_DIFF_BYTES);
        text.truncate(cut);
        text.push_str("\n(The diff was cut here: it is larger than 8 MB.)\n");
    }
    Changes::from_text(text)
}

/// The git repositories in the workspace, itself included, up to three folders down,
/// found without following links.
fn repositories(workspace: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![(workspace.to_path_buf(), 0)];
    while let Some((folder, depth)) = folders.pop() {
        if std::fs::symlink_metadata(folder.join(".git")).is_ok() {
            found.push(folder.clone());
        }
        if depth == 3 {
            continue;
        }
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let name = entry.file_name();
            if is_dir && name != ".git" && name != "node_modules" {
                folders.push((entry.path(), depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// The shadow repository leaves out the workspace's own repositories and build output.
fn write_excludes(shadow: &Path, workspace: &Path) {
    let mut lines: Vec<String> = NOT_TRACKED.iter().map(|p| p.to_string()).collect();
    for repo in repositories(workspace) {
        if let Ok(relative) = repo.strip_prefix(workspace) {
            let relative = relative.to_string_lossy();
            lines.push(if relative.is_empty() {
                "/*".into()
            } else {
                format!("/{relative}/")
            });
        }
    }
    let _ = std::fs::create_dir_all(shadow.join("info"));
    let _ = std::fs::write(shadow.join("info/exclude"), lines.join("\n") + "\n");
}

async fn shadow_git(
    config: &Config,
    workspace: &Path,
    shadow: &Path,
    args: &[&str],
) -> Option<String> {
    let git_dir = shadow.display().to_string();
    let work_tree = workspace.display().to_string();
    git(
        config,
        workspace,
        args,
        &[
            ("GIT_DIR", git_dir.as_str()),
            ("GIT_WORK_TREE", work_tree.as_str()),
        ],
    )
    .await
}

/// Runs git in `dir` as the agent; its stdout, or `None` when it could not run or failed.
/// `git diff --no-index` exits 1 when the files differ, which is what it is asked for.
async fn git(config: &Config, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    let home = config.data_dir.join("home");
    let _ = std::fs::create_dir_all(&home);
    let mut command = tokio::process::Command::new("git");
    command
        .args([
            "-c",
            "safe.directory=*",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.quotePath=false",
        ])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(agent) = &config.agent_user {
        // The baseline's folders, made by the vm, are the agent's to write.
        if let Some(git_dir) = env
            .iter()
            .find(|(k, _)| *k == "GIT_DIR")
            .map(|(_, v)| Path::new(*v))
        {
            let _ = agent.give(git_dir);
            if let Some(parent) = git_dir.parent() {
                let _ = agent.give(parent);
            }
        }
        agent.confine(&mut command);
    }
    let output = tokio::time::timeout(GIT_TIMEOUT, command.output())
        .await
        .ok()?
        .ok()?;
    let differs = args.contains(&"--no-index") && output.status.code() == Some(1);
    (output.status.success() || differs)
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_outside_git_are_diffed_against_the_session_s_baseline() {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().display().to_string();
        let env = [
            ("VM_TOKEN", "t"),
            ("RELAY_CALLBACK_URL", "http://r/callback"),
            ("AGENT_CMD", "x"),
            ("DATA_DIR", data_dir.as_str()),
        ];
        let config = Config::from_lookup(|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let workspace = data.path().join("workspaces/telegram_1");
        std::fs::create_dir_all(workspace.join("node_modules")).unwrap();
        std::fs::write(workspace.join("before.txt"), "kept\n").unwrap();
        record_baseline(&config, &workspace).await;
        assert!(changes(&config, &workspace).await.is_empty());
        std::fs::write(workspace.join("hello.txt"), "hello\n").unwrap();
        std::fs::write(workspace.join("node_modules/dep.js"), "x\n").unwrap();
        std::fs::remove_file(workspace.join("before.txt")).unwrap();
        let changed = changes(&config, &workspace).await;
        assert_eq!(
            changed.summary(),
            "2 files changed, +1 −1",
            "{}",
            changed.text
        );
        forget_baseline(&config, &workspace);
        record_baseline(&config, &workspace).await;
        assert!(changes(&config, &workspace).await.is_empty());
    }

    #[test]
    fn a_diff_is_counted_by_files_and_lines() {
        let text = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1,2 @@\n-old\n+new\n+more\ndiff --git a/y b/y\n--- /dev/null\n+++ b/y\n@@ -0,0 +1 @@\n+y\n";
        let changes = Changes::from_text(text.into());
        assert_eq!((changes.files, changes.added, changes.removed), (2, 3, 1));
        assert_eq!(changes.summary(), "2 files changed, +3 −1");
        assert!(Changes::from_text(String::new()).is_empty());
    }
}
