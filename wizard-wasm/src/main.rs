//! Entry point of the page: panic messages to the console (debug builds), the offline cache,
//! then the app.

fn main() {
    // Panic messages to the console only in debug builds: the hook and its formatting cost
    // several KB of the release wasm, which aborts on panic anyway.
    #[cfg(debug_assertions)]
    console_error_panic_hook::set_once();
    wizard_wasm::register_service_worker();
    leptos::mount::mount_to_body(wizard_wasm::App);
}
