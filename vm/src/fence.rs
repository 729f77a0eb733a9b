//! The agent's fence. Claude Code runs what a model (or a page it read) tells it to, so it is
//! kept from everything that is the vm's:
//! - it runs as its own OS user (`AGENT_USER`), with `no_new_privs`, owning only its
//!   workspaces, its image folders, its Claude config and its home;
//! - `DATA_DIR` itself and the vm's store (`vm.db`) belong to the vm's user, mode 0711 and
//!   0600: the agent passes through to its folders and reads nothing else;
//! - the vm's process is not dumpable, so `/proc/<vm>/environ` (`VM_TOKEN`, the callback URL)
//!   and its memory stay closed to the agent;
//! - Claude Code reads its managed settings from `/etc/claude-code/managed-settings.json`,
//!   root-owned (the image ships `deploy/claude-managed-settings.json` there), which turns off
//!   every hook: one the agent plants in its own settings never runs in a later session.
//!
//! Without `AGENT_USER` (a developer's machine) the agent runs as the vm's own user, unfenced,
//! and the vm says so at start.

use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;

/// Where Claude Code reads settings a user cannot override (Linux).
pub const MANAGED_SETTINGS: &str = "/etc/claude-code/managed-settings.json";

/// The folders below `DATA_DIR` that are the agent's.
pub const AGENT_DIRS: [&str; 4] = ["workspaces", "images", "claude", "home"];

/// The OS user the agent runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentUser {
    pub uid: u32,
    pub gid: u32,
}

impl AgentUser {
    /// Looks `name` up in the user database.
    pub fn named(name: &str) -> io::Result<AgentUser> {
        let c_name = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "AGENT_USER has a NUL"))?;
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let mut buffer = vec![0u8; 16 * 1024];
        // getpwnam_r fills `entry` from `buffer`; `found` is null when there is no such user.
        let status = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        if status != 0 || found.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user named {name} (AGENT_USER)"),
            ));
        }
        Ok(AgentUser {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        })
    }

    /// Makes `command` run as the agent: its user and group, and no privilege to gain through
    /// setuid programs (no_new_privs). Everything the vm runs over what the agent wrote (its
    /// git repositories, whose config can name programs) runs this way.
    pub fn confine(&self, command: &mut tokio::process::Command) {
        command.uid(self.uid).gid(self.gid);
        // SAFETY: prctl only sets a flag of the child between fork and exec, which is
        // async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    /// Makes `path` (a folder or file the vm just created for the agent) the agent's.
    pub fn give(&self, path: &Path) -> io::Result<()> {
        chown(path, Some(self.uid), Some(self.gid))
    }
}

/// Lays `DATA_DIR` out for a fenced agent: the folder and the store the vm's alone, the
/// agent's folders its own (a volume from before the fence had everything the agent's).
pub fn prepare(data_dir: &Path, agent: &AgentUser) -> io::Result<()> {
    let (vm_uid, vm_gid) = (unsafe { libc::geteuid() }, unsafe { libc::getegid() });
    chown(data_dir, Some(vm_uid), Some(vm_gid))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711))?;
    for entry in std::fs::read_dir(data_dir)?.flatten() {
        let name = entry.file_name();
        let path = entry.path();
        if AGENT_DIRS.iter().any(|dir| name == *dir) {
            continue;
        }
        // Everything else is the vm's: its store, and the agents' MCP configs.
        chown(&path, Some(vm_uid), Some(vm_gid))?;
        if entry.file_type()?.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    for dir in AGENT_DIRS {
        let path = data_dir.join(dir);
        std::fs::create_dir_all(&path)?;
        agent.give(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Closes the vm's process to others: no core dump, no ptrace, and `/proc/<pid>/*` owned by
/// root, so not even a process of the vm's own user reads its environment.
pub fn make_undumpable() {
    // SAFETY: prctl with these arguments only changes a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Whether Claude Code's managed settings turn hooks off (`disableAllHooks`), in a file the
/// agent cannot change (root's, not writable by others).
pub fn hooks_pinned_off() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(MANAGED_SETTINGS) else {
        return false;
    };
    let safe = metadata.uid() == 0 && metadata.mode() & 0o022 == 0;
    let settings: serde_json::Value = std::fs::read_to_string(MANAGED_SETTINGS)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    safe && settings["disableAllHooks"] == true
}
