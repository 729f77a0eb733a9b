//! The page's first part: the home screen (the remembered deployments and New deployment)
//! and the wizard's first step, small enough to arrive quickly on a slow phone (index.html
//! carries it inline: `xtask/src/dist.rs`). `src/main.rs` mounts it, then fetches the rest of
//! the page ([`crate::App`], built as `src/bin/rest.rs`) and hands the page over to it with
//! what was done here ([`Handover`]): this part unmounts and the rest mounts at the same
//! route.
//!
//! Loading the rest goes through `textslashLoadRest`, a few lines of JavaScript in
//! `index.html` (a dynamic `import()` of the file its `<meta name="textslash-rest">` names),
//! so the Content-Security-Policy stays as strict: same-origin scripts and the hashes of the
//! page's own inline scripts only.

use crate::pages::home::Home;
use crate::pages::token::{FlyToken, TokenCheck, TokenForm};
use crate::route::Route;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

/// The bar at the top of every screen, in both parts.
#[component]
pub fn Header() -> impl IntoView {
    view! {
        <header class="bar">
            <a class="brand" id="brand" href="#/">"textslash"</a>
        </header>
    }
}

/// "You are offline" while the browser says so.
#[component]
pub fn OfflineNotice() -> impl IntoView {
    let online = RwSignal::new(window().navigator().on_line());
    for (event, value) in [("online", true), ("offline", false)] {
        let handler = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || online.set(value));
        let _ = window().add_event_listener_with_callback(
            event,
            wasm_bindgen::JsCast::unchecked_ref(handler.as_ref()),
        );
        // The page lives as long as its listeners.
        handler.forget();
    }
    view! {
        <Show when=move || !online.get()>
            <p class="warning offline" role="status">"You are offline. The page works, but deploying and checking your apps need the network."</p>
        </Show>
    }
}

/// What the user did in the first part that the rest must carry on with: the Fly token typed
/// on step 1, a check tapped there, an export file chosen to import. `failed` is set when the
/// rest could not be loaded.
#[derive(Clone, Copy)]
pub struct Carried {
    pub fly: FlyToken,
    /// A tap on Check token (`false`) or Next (`true`) that waits for the rest.
    pub check_token: RwSignal<Option<bool>>,
    pub import: RwSignal<Option<String>>,
    pub failed: RwSignal<bool>,
}

impl Carried {
    pub fn new() -> Carried {
        Carried {
            fly: FlyToken::remembered(),
            check_token: RwSignal::new(None),
            import: RwSignal::new(None),
            failed: RwSignal::new(false),
        }
    }

    /// What the rest is handed, now.
    pub fn handover(&self) -> Handover {
        Handover {
            focused: focused_control(),
            fly_token: Some(self.fly.token.get_untracked()),
            check_token: self.check_token.get_untracked(),
            import: self.import.get_untracked(),
        }
    }
}

impl Default for Carried {
    fn default() -> Self {
        Carried::new()
    }
}

/// What the first part shows at `route`: the home screen, the wizard's first step (a tap on
/// New deployment never waits for the rest), or, for a deep link to another screen, that it is
/// loading.
#[component]
pub fn Front(carried: Carried, route: ReadSignal<Route>) -> impl IntoView {
    crate::focus_heading_on_new_screen(route);
    view! {
        <Header/>
        <OfflineNotice/>
        <main>
            {move || match route.get() {
                Route::Home => view! {
                    <Home on_new=Callback::new(|()| crate::wizard::forget_draft()) check_health=false
                        on_import=Callback::new(move |text| {
                            carried.import.set(Some(text));
                            None
                        })/>
                }.into_any(),
                Route::New(1) => view! { <FirstStep carried=carried/> }.into_any(),
                _ => view! { <p class="muted" role="status" aria-busy="true">"Loading…"</p> }.into_any(),
            }}
            <Show when=move || carried.failed.get()>
                <p class="error" role="alert">"The rest of this page did not load. Check your connection, then reload the page."</p>
            </Show>
        </main>
    }
}

/// Step 1 before the rest has arrived: checking the token needs the Fly client, which is in
/// the rest, so a tap on Check token or Next is kept (the button says Checking…) and the rest
/// checks once it has taken over.
#[component]
fn FirstStep(carried: Carried) -> impl IntoView {
    let check = TokenCheck::new();
    let keep = Callback::new(move |and_next: bool| {
        carried.check_token.set(Some(and_next));
        check.checking.set(true);
    });
    view! { <TokenForm fly=carried.fly check=check on_check=keep/> }
}

/// What the first part hands the rest with the page ([`Carried::handover`]). No `Debug`: it
/// holds the Fly token.
#[derive(Clone, Default, PartialEq)]
pub struct Handover {
    /// The id of the control that had focus (`-` for one without an id); empty for none.
    pub focused: String,
    /// The Fly token in step 1's field (in memory, as everywhere).
    pub fly_token: Option<String>,
    /// A check tapped there: `Some(true)` to move on once it passes.
    pub check_token: Option<bool>,
    /// The text of an export file chosen to import.
    pub import: Option<String>,
}

impl Handover {
    /// As the one JavaScript object the rest's `take_over` takes.
    pub fn to_js(&self) -> JsValue {
        let object = js_sys::Object::new();
        let set = |key: &str, value: JsValue| {
            let _ = js_sys::Reflect::set(&object, &key.into(), &value);
        };
        set("focused", self.focused.as_str().into());
        if let Some(token) = &self.fly_token {
            set("fly_token", token.as_str().into());
        }
        if let Some(and_next) = self.check_token {
            set("check_token", and_next.into());
        }
        if let Some(text) = &self.import {
            set("import", text.as_str().into());
        }
        object.into()
    }

    /// Read back in the rest; anything missing or of another type is left out.
    pub fn from_js(value: &JsValue) -> Handover {
        let get = |key: &str| js_sys::Reflect::get(value, &key.into()).unwrap_or_default();
        Handover {
            focused: get("focused").as_string().unwrap_or_default(),
            fly_token: get("fly_token").as_string(),
            check_token: get("check_token").as_bool(),
            import: get("import").as_string(),
        }
    }
}

/// The handover in the whole app's context; what carries each piece on takes it, once.
#[derive(Clone, Copy)]
pub struct HandedOver(pub StoredValue<Handover>);

/// Takes a piece of the handover ([`HandedOver`]), if the page was handed over and the piece
/// is still there.
pub fn take_handed_over<T>(take: impl FnOnce(&mut Handover) -> Option<T>) -> Option<T> {
    let HandedOver(handover) = use_context::<HandedOver>()?;
    handover.try_update_value(take).flatten()
}

/// The id of the control with focus (`-` for one without an id); empty for none.
fn focused_control() -> String {
    document()
        .active_element()
        .filter(|e| e.tag_name() != "BODY")
        .map(|e| {
            if e.id().is_empty() {
                "-".into()
            } else {
                e.id()
            }
        })
        .unwrap_or_default()
}

/// Waits until the rest may take the page over: at once, unless step 1 is showing at `route`
/// (its field may be mid-typing, and keys pressed while the page changes hands would be lost);
/// then until a check is tapped there or another screen is chosen.
pub async fn free_to_hand_over(carried: Carried, route: ReadSignal<Route>) {
    let (free, now_free) = futures::channel::oneshot::channel();
    let mut free = Some(free);
    Effect::new(move |_| {
        let typing = route.get() == Route::New(1) && carried.check_token.get().is_none();
        if !typing && let Some(free) = free.take() {
            let _ = free.send(());
        }
    });
    let _ = now_free.await;
}

/// Loads the rest of the page (`textslashLoadRest` in index.html): its module, initialised.
pub async fn load_rest() -> Result<JsValue, JsValue> {
    let load: js_sys::Function =
        js_sys::Reflect::get(&window(), &JsValue::from_str("textslashLoadRest"))?.dyn_into()?;
    let promise: js_sys::Promise = load.call0(&JsValue::NULL)?.dyn_into()?;
    wasm_bindgen_futures::JsFuture::from(promise).await
}

/// The rest's `take_over`, which mounts the whole app; called once this part has unmounted,
/// with the [`Handover`].
pub fn take_over(rest: &JsValue) -> Result<js_sys::Function, JsValue> {
    js_sys::Reflect::get(rest, &JsValue::from_str("take_over"))?.dyn_into()
}
