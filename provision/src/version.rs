//! Which textslash a deployment runs, and what an update would change.
//!
//! The CLI, the page and the images carry one version, the workspace's ([`VERSION`]). A
//! deployment's version is read from the tag of the image its machines were given
//! (`ghcr.io/textslash/textslash-vm:0.2.0@sha256:…` runs 0.2.0). An image named otherwise (a
//! fork's own tag, a digest alone) has no version that can be compared, and nothing is said
//! about it.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The version of this build of the page or CLI, and of the images it deploys.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The tag of an image reference, without a digest: `0.2.0` in
/// `ghcr.io/textslash/textslash-vm:0.2.0@sha256:…`. `None` when the image has no tag (a
/// registry port, `host:5000/name`, is not a tag).
pub fn image_tag(image: &str) -> Option<&str> {
    let named = image.split('@').next().unwrap_or(image);
    let last_segment = named.rsplit('/').next().unwrap_or(named);
    last_segment
        .split_once(':')
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.is_empty())
}

/// The textslash version an image carries, when its tag is one (`0.2.0` or `v0.2.0`).
pub fn of_image(image: &str) -> Option<Version> {
    image_tag(image).and_then(Version::parse)
}

/// A release version, `major.minor.patch` with an optional `-pre` part, ordered as semver
/// orders them (a pre-release comes before its release; pre-release parts compare as text,
/// which is all textslash's own `-rc.N` tags need).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Option<String>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre.to_string())),
            Some(_) => return None,
            None => (text, None),
        };
        let mut numbers = core.split('.').map(|n| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse::<u64>().ok())
                .flatten()
        });
        let version = Version {
            major: numbers.next()??,
            minor: numbers.next()??,
            patch: numbers.next()??,
            pre,
        };
        numbers.next().is_none().then_some(version)
    }

    /// This build's own version.
    pub fn current() -> Version {
        Version::parse(VERSION).expect("the workspace version is major.minor.patch")
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// How a deployment's version stands against the images this page or CLI would deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Both machines run the version on offer.
    Current(Version),
    /// A newer version is on offer: `update` moves the deployment to it.
    Behind { deployed: Version, offered: Version },
    /// The deployment runs a newer version than this page or CLI offers (it was updated
    /// from a newer one); an update from here would move it back.
    Ahead { deployed: Version, offered: Version },
    /// The two machines run different versions (an update stopped half-way).
    Mixed { relay: Version, vm: Version },
    /// Some image has no version to compare (a fork's own tag, or no machine).
    Unknown,
}

/// Compares the images a deployment runs with the ones on offer.
pub fn standing(relay: Option<&str>, vm: Option<&str>, offered: &crate::spec::Images) -> Standing {
    let (Some(relay), Some(vm)) = (relay.and_then(of_image), vm.and_then(of_image)) else {
        return Standing::Unknown;
    };
    let (Some(offered_relay), Some(offered_vm)) = (of_image(&offered.relay), of_image(&offered.vm))
    else {
        return Standing::Unknown;
    };
    if relay != vm {
        return Standing::Mixed { relay, vm };
    }
    // The images on offer are one version; were they not, the newer one is what is offered.
    let offered = offered_relay.max(offered_vm);
    match relay.cmp(&offered) {
        Ordering::Equal => Standing::Current(relay),
        Ordering::Less => Standing::Behind {
            deployed: relay,
            offered,
        },
        Ordering::Greater => Standing::Ahead {
            deployed: relay,
            offered,
        },
    }
}

impl Standing {
    /// One line for `textslash status` and the detail screen; `update` says how the reader
    /// updates (`run textslash update --prefix x` or `tap Update`).
    pub fn sentence(&self, update: &str) -> String {
        match self {
            Standing::Current(version) => format!("Runs textslash {version}, the newest here."),
            Standing::Behind { deployed, offered } => format!(
                "Runs textslash {deployed}; {offered} is available: {update} to move it to {offered}."
            ),
            Standing::Ahead { deployed, offered } => format!(
                "Runs textslash {deployed}, newer than this one ({offered}): update it from textslash {deployed} or newer."
            ),
            Standing::Mixed { relay, vm } => format!(
                "The relay runs textslash {relay} and the agent machine {vm}: {update} to bring both to one version."
            ),
            Standing::Unknown => {
                "Runs images without a textslash version in their tag.".to_string()
            }
        }
    }
}

/// What an update changed on one machine: its image, from and to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `relay` or `vm`.
    pub role: String,
    pub machine: String,
    pub from: Option<String>,
    pub to: String,
}

/// The closing line of an update: `Updated the agent machine from 0.1.0 to 0.2.0 and the
/// relay from 0.1.0 to 0.2.0.`, with image names where they carry no version.
pub fn describe_update(changes: &[Change], offered: &crate::spec::Images) -> String {
    if changes.is_empty() {
        let shown = of_image(&offered.vm)
            .map(|v| format!("textslash {v}"))
            .unwrap_or_else(|| "those images".into());
        return format!("Nothing to update: both machines already run {shown}.");
    }
    let named = |image: &str| match of_image(image) {
        Some(version) => version.to_string(),
        None => image.to_string(),
    };
    let parts: Vec<String> = changes
        .iter()
        .map(|change| {
            let what = if change.role == "vm" {
                "the agent machine"
            } else {
                "the relay"
            };
            match &change.from {
                Some(from) => format!("{what} from {} to {}", named(from), named(&change.to)),
                None => format!("{what} to {}", named(&change.to)),
            }
        })
        .collect();
    format!("Updated {}.", parts.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Images;

    fn images(version: &str) -> Images {
        Images {
            relay: format!("ghcr.io/textslash/textslash-relay:{version}"),
            vm: format!("ghcr.io/textslash/textslash-vm:{version}@sha256:abc"),
        }
    }

    #[test]
    fn an_image_s_tag_is_its_version() {
        assert_eq!(
            image_tag("ghcr.io/a/textslash-vm:0.2.0@sha256:ab"),
            Some("0.2.0")
        );
        assert_eq!(image_tag("localhost:5000/a/vm"), None);
        assert_eq!(image_tag("localhost:5000/a/vm:1.0.0"), Some("1.0.0"));
        assert_eq!(image_tag("ghcr.io/a/vm@sha256:ab"), None);
        assert_eq!(image_tag("ghcr.io/a/vm:"), None);
        assert_eq!(of_image("ghcr.io/a/vm:v1.2.3"), Version::parse("1.2.3"));
        assert_eq!(of_image("ghcr.io/a/vm:sha-abc1234"), None);
        assert_eq!(of_image("ghcr.io/a/vm:latest"), None);
    }

    #[test]
    fn versions_order_as_semver_does() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("0.10.0") > v("0.9.9"));
        assert!(v("1.0.0") > v("1.0.0-rc.1"));
        assert!(v("1.0.0-rc.2") > v("1.0.0-rc.1"));
        for bad in ["1.0", "1.0.0.0", "1..0", "1.0.x", "1.0.0-", "+1.0.0", ""] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert_eq!(Version::current().to_string(), VERSION);
    }

    #[test]
    fn a_deployment_stands_behind_level_or_ahead() {
        let (r, vm) = (
            "ghcr.io/textslash/textslash-relay:0.1.0",
            "ghcr.io/textslash/textslash-vm:0.1.0",
        );
        let behind = standing(Some(r), Some(vm), &images("0.2.0"));
        assert_eq!(
            behind.sentence("tap Update"),
            "Runs textslash 0.1.0; 0.2.0 is available: tap Update to move it to 0.2.0."
        );
        assert!(matches!(
            standing(Some(r), Some(vm), &images("0.1.0")),
            Standing::Current(_)
        ));
        assert!(matches!(
            standing(Some(r), Some(vm), &images("0.0.9")),
            Standing::Ahead { .. }
        ));
        let mixed = standing(Some(r), Some("x/vm:0.2.0"), &images("0.2.0"));
        assert!(matches!(mixed, Standing::Mixed { .. }), "{mixed:?}");
        assert_eq!(
            standing(Some("fork/relay:main"), Some(vm), &images("0.2.0")),
            Standing::Unknown
        );
        assert_eq!(
            standing(None, Some(vm), &images("0.2.0")),
            Standing::Unknown
        );
    }

    #[test]
    fn an_update_says_from_what_to_what() {
        let change = |role: &str, from: Option<&str>, to: &str| Change {
            role: role.into(),
            machine: "m".into(),
            from: from.map(str::to_string),
            to: to.into(),
        };
        let offered = images("0.2.0");
        assert_eq!(
            describe_update(
                &[
                    change("vm", Some("x/vm:0.1.0"), &offered.vm),
                    change("relay", Some("x/relay:0.1.0"), &offered.relay),
                ],
                &offered
            ),
            "Updated the agent machine from 0.1.0 to 0.2.0 and the relay from 0.1.0 to 0.2.0."
        );
        assert_eq!(
            describe_update(
                &[change("relay", Some("fork/relay:main"), "x/relay:0.2.0")],
                &offered
            ),
            "Updated the relay from fork/relay:main to 0.2.0."
        );
        assert_eq!(
            describe_update(&[], &offered),
            "Nothing to update: both machines already run textslash 0.2.0."
        );
    }
}
