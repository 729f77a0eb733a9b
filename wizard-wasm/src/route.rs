//! Routing by the URL's hash (`#/new/2`), so deep links work from a bookmark and from any
//! sub-path of a static host (GitHub Pages serves no fallback page for unknown paths).

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

/// The screens of the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The remembered deployments.
    Home,
    /// The wizard, at step `1..=7`.
    New(u8),
    /// One deployment, by prefix.
    Detail(String),
    NotFound(String),
}

impl Route {
    pub fn parse(hash: &str) -> Route {
        let path = hash.trim_start_matches('#').trim_matches('/');
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [] => Route::Home,
            ["new"] => Route::New(1),
            ["new", step] => match step.parse::<u8>() {
                Ok(n @ 1..=7) => Route::New(n),
                _ => Route::NotFound(path.to_string()),
            },
            ["d", prefix] if !prefix.is_empty() => Route::Detail((*prefix).to_string()),
            _ => Route::NotFound(path.to_string()),
        }
    }

    pub fn href(&self) -> String {
        match self {
            Route::Home | Route::NotFound(_) => "#/".into(),
            Route::New(step) => format!("#/new/{step}"),
            Route::Detail(prefix) => format!("#/d/{prefix}"),
        }
    }
}

fn current_hash() -> String {
    window().location().hash().unwrap_or_default()
}

/// The current route as a signal that follows `hashchange`.
pub fn use_route() -> ReadSignal<Route> {
    let (route, set_route) = signal(Route::parse(&current_hash()));
    let on_change = Closure::<dyn Fn()>::new(move || set_route.set(Route::parse(&current_hash())));
    window()
        .add_event_listener_with_callback("hashchange", on_change.as_ref().unchecked_ref())
        .expect("hashchange listener");
    // The app lives as long as the page.
    on_change.forget();
    route
}

/// Goes to `route` (adds a history entry, so Back works).
pub fn navigate(route: &Route) {
    let _ = window().location().set_hash(&route.href());
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn hashes_round_trip() {
        for route in [Route::Home, Route::New(3), Route::Detail("my-agent".into())] {
            assert_eq!(Route::parse(&route.href()), route);
        }
        assert_eq!(Route::parse(""), Route::Home);
        assert_eq!(Route::parse("#/new"), Route::New(1));
        assert!(matches!(Route::parse("#/new/9"), Route::NotFound(_)));
        assert!(matches!(Route::parse("#/elsewhere"), Route::NotFound(_)));
    }
}
