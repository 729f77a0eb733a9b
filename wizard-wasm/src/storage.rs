//! What the page remembers on this device, in localStorage behind a small [`KeyValue`] trait
//! (an in-memory twin tests the logic natively).
//!
//! - the deployments (bookmarks): names, region, channel, app and resource ids, created
//!   time: never a secret ([`provision::Deployment`] has no field for one);
//! - the wizard's draft: what the user typed, minus every secret;
//! - the Fly token, only when the user opted in after a warning;
//! - in sessionStorage (this tab only, never other pages of the origin), the pairing code.

use provision::Deployment;
use std::cell::RefCell;
use std::collections::BTreeMap;

pub const DEPLOYMENTS_KEY: &str = "textslash.deployments.v1";
pub const DRAFT_KEY: &str = "textslash.draft.v1";
pub const TOKEN_KEY: &str = "textslash.fly_token";
pub const PAIRING_KEY: &str = "textslash.pairing.v1";

/// A string store: localStorage in the browser, a map in tests.
pub trait KeyValue {
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str);
    fn remove(&self, key: &str);
}

/// `window.localStorage`: this origin's, on this device, until cleared.
pub struct LocalStorage;

/// `window.sessionStorage`: this tab's, gone when it closes; another page of the same origin
/// in another tab cannot read it.
pub struct SessionStorage;

/// One of the browser's storage areas. Failures (private mode, quota) make it forgetful, not
/// broken.
trait BrowserArea {
    fn area() -> Option<web_sys::Storage>;
}

impl BrowserArea for LocalStorage {
    fn area() -> Option<web_sys::Storage> {
        web_sys::window()?.local_storage().ok().flatten()
    }
}

impl BrowserArea for SessionStorage {
    fn area() -> Option<web_sys::Storage> {
        web_sys::window()?.session_storage().ok().flatten()
    }
}

impl<T: BrowserArea> KeyValue for T {
    fn get(&self, key: &str) -> Option<String> {
        T::area()?.get_item(key).ok().flatten()
    }
    fn set(&self, key: &str, value: &str) {
        if let Some(s) = T::area() {
            let _ = s.set_item(key, value);
        }
    }
    fn remove(&self, key: &str) {
        if let Some(s) = T::area() {
            let _ = s.remove_item(key);
        }
    }
}

#[derive(Default)]
pub struct MemoryStore(RefCell<BTreeMap<String, String>>);

impl KeyValue for MemoryStore {
    fn get(&self, key: &str) -> Option<String> {
        self.0.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &str) {
        self.0.borrow_mut().insert(key.into(), value.into());
    }
    fn remove(&self, key: &str) {
        self.0.borrow_mut().remove(key);
    }
}

/// The remembered deployments, newest first.
pub fn deployments(store: &dyn KeyValue) -> Vec<Deployment> {
    store
        .get(DEPLOYMENTS_KEY)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_deployments(store: &dyn KeyValue, list: &[Deployment]) {
    store.set(
        DEPLOYMENTS_KEY,
        &serde_json::to_string(list).expect("deployments serialise"),
    );
}

/// Adds or replaces (by prefix) a deployment.
pub fn remember(store: &dyn KeyValue, deployment: &Deployment) {
    let mut list = deployments(store);
    list.retain(|d| d.prefix != deployment.prefix);
    list.insert(0, deployment.clone());
    save_deployments(store, &list);
}

pub fn forget(store: &dyn KeyValue, prefix: &str) {
    let mut list = deployments(store);
    list.retain(|d| d.prefix != prefix);
    save_deployments(store, &list);
}

pub fn find(store: &dyn KeyValue, prefix: &str) -> Option<Deployment> {
    deployments(store).into_iter().find(|d| d.prefix == prefix)
}

/// Whether other pages can read this page's storage: localStorage belongs to the origin, and
/// on a shared host (`<owner>.github.io/<repo>`, or any page below the root of its host)
/// every other page of that origin reads the same storage.
pub fn origin_is_shared(host: &str, path: &str) -> bool {
    let shared_hosts = [".github.io", ".gitlab.io", ".pages.dev", ".netlify.app"];
    shared_hosts.iter().any(|h| host.ends_with(h)) || !path.trim_matches('/').is_empty()
}

/// What the home screen shows of a remembered deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Bookmark {
    pub prefix: String,
    pub region: String,
    pub relay_url: String,
}

/// The remembered deployments as the home screen lists them, newest first. Read with the
/// browser's own JSON parser: the home screen is the page's first part, and serde_json with
/// [`Deployment`]'s derives was a third of it. (The browser only: tests run it in Chromium.)
pub fn bookmarks(store: &dyn KeyValue) -> Vec<Bookmark> {
    let Some(list) = stored_list(store) else {
        return Vec::new();
    };
    let field = |entry: &wasm_bindgen::JsValue, name: &str| {
        js_sys::Reflect::get(entry, &name.into())
            .ok()
            .and_then(|value| value.as_string())
            .unwrap_or_default()
    };
    list.iter()
        .map(|entry| Bookmark {
            prefix: field(&entry, "prefix"),
            region: field(&entry, "region"),
            relay_url: field(&entry, "relay_url"),
        })
        .filter(|bookmark| !bookmark.prefix.is_empty())
        .collect()
}

/// The export file's content: the remembered list as stored (only [`save_deployments`] writes
/// it), indented. The browser only, like [`bookmarks`].
pub fn export(store: &dyn KeyValue) -> String {
    stored_list(store)
        .and_then(|list| {
            js_sys::JSON::stringify_with_replacer_and_space(
                &list,
                &wasm_bindgen::JsValue::NULL,
                &2.into(),
            )
            .ok()
        })
        .and_then(|text| text.as_string())
        .unwrap_or_else(|| "[]".into())
}

fn stored_list(store: &dyn KeyValue) -> Option<js_sys::Array> {
    let list = js_sys::JSON::parse(&store.get(DEPLOYMENTS_KEY)?).ok()?;
    js_sys::Array::is_array(&list).then(|| list.into())
}

/// Merges an exported file in; returns how many deployments it held. Anything that is not a
/// deployment's field (a secret someone added by hand, say) is dropped on the way in.
pub fn import(store: &dyn KeyValue, text: &str) -> Result<usize, String> {
    let incoming: Vec<Deployment> = serde_json::from_str(text).map_err(|_| {
        "That file is not a textslash export (a JSON list of deployments).".to_string()
    })?;
    if incoming
        .iter()
        .any(|d| provision::spec::validate_prefix(&d.prefix).is_err())
    {
        return Err(
            "That file holds a deployment with an invalid prefix; nothing was imported.".into(),
        );
    }
    // Teardown deletes the apps a bookmark names: they must be the prefix's own two apps.
    if incoming.iter().any(|d| {
        d.relay_app != format!("{}-relay", d.prefix) || d.vm_app != format!("{}-vm", d.prefix)
    }) {
        return Err(
            "That file names apps that do not match their deployment's prefix; nothing was imported."
                .into(),
        );
    }
    for deployment in incoming.iter().rev() {
        remember(store, deployment);
    }
    Ok(incoming.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_origins_are_recognised() {
        assert!(origin_is_shared("someone.github.io", "/textslash/"));
        assert!(origin_is_shared("someone.github.io", "/"));
        assert!(origin_is_shared("example.com", "/tools/textslash/"));
        assert!(!origin_is_shared("textslash.example.com", "/"));
        assert!(!origin_is_shared("localhost:8080", ""));
    }

    #[test]
    fn an_import_naming_other_apps_is_refused() {
        let store = MemoryStore::default();
        let mut foreign = deployment("mine");
        foreign.vm_app = "someone-elses-app".into();
        let text = serde_json::to_string(&vec![foreign]).unwrap();
        assert!(import(&store, &text).unwrap_err().contains("do not match"));
        assert!(deployments(&store).is_empty(), "nothing was imported");
    }

    fn deployment(prefix: &str) -> Deployment {
        Deployment {
            prefix: prefix.into(),
            relay_app: format!("{prefix}-relay"),
            vm_app: format!("{prefix}-vm"),
            ..Default::default()
        }
    }

    #[test]
    fn remember_replaces_by_prefix_newest_first() {
        let store = MemoryStore::default();
        remember(&store, &deployment("a"));
        remember(&store, &deployment("b"));
        remember(
            &store,
            &Deployment {
                region: "fra".into(),
                ..deployment("a")
            },
        );
        let list = deployments(&store);
        assert_eq!(
            list.iter().map(|d| d.prefix.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(list[0].region, "fra");
        forget(&store, "a");
        assert_eq!(deployments(&store).len(), 1);
    }

    #[test]
    fn import_drops_unknown_fields_and_refuses_garbage() {
        let store = MemoryStore::default();
        let n = import(
            &store,
            r#"[{"prefix":"x","relay_app":"x-relay","vm_app":"x-vm","fly_token":"FlyV1 secret"}]"#,
        )
        .unwrap();
        assert_eq!(n, 1);
        assert!(!store.get(DEPLOYMENTS_KEY).unwrap().contains("secret"));
        assert!(import(&store, "{").is_err());
        assert!(import(&store, r#"[{"prefix":"Bad Prefix"}]"#).is_err());
        assert_eq!(
            deployments(&store).len(),
            1,
            "a refused import changes nothing"
        );
    }
}
