//! The page's load figures on a slow phone.

use super::*;

/// The page's load figures, as a person on a phone feels them, on a phone-like link and CPU
/// (Chrome DevTools' "Fast 3G" numbers: ≈1.6 Mbps down, 750 kbps up, 562.5 ms round trip; CPU
/// slowed 4×), served gzipped like a CDN, from a fresh profile (no cache, no service worker),
/// median of three:
/// - the home screen shown and working: its New deployment control in the document (Leptos
///   attaches a control's handlers as it creates the element, so in the document is working);
/// - the first wizard step working after a tap on New deployment made that very moment (the
///   probe taps it): its Fly token field in the document and typed into (the probe types at
///   once); a tap on Check token then hands the page to the rest, with what was typed;
/// - the bytes of each part, as the browser received them.
///
/// Figures, not timed assertions: `cargo xtask page-load` and `cargo xtask test` print them.
#[tokio::test]
#[ignore = "needs the built page and chromedriver; cargo xtask test runs it"]
async fn the_page_load_figure_on_a_slow_phone() {
    let page = page_for("http://127.0.0.1:9");
    gzip_beside_each_file(page.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let files = tower_http::services::ServeDir::new(page.path()).precompressed_gzip();
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback_service(files)).await;
    });

    let mut runs = Vec::new();
    for run in 0..3 {
        let browser = Browser::start(&format!("page-load-{run}")).await;
        for (cmd, params) in [
            ("Network.enable", json!({})),
            (
                "Network.emulateNetworkConditions",
                json!({"offline": false, "latency": 562.5,
                       "downloadThroughput": 1_600_000 / 8, "uploadThroughput": 750_000 / 8}),
            ),
            ("Emulation.setCPUThrottlingRate", json!({"rate": 4})),
            (
                "Page.addScriptToEvaluateOnNewDocument",
                json!({"source": LOAD_PROBE}),
            ),
        ] {
            browser.devtools(cmd, params).await;
        }
        browser.go(&format!("{origin}/")).await;
        let [home_ms, wizard_ms] = eventually(
            "the wizard's first step",
            Duration::from_secs(60),
            async || {
                let times = browser
                    .eval(
                        "return [window.__homeMs ?? null, window.__wizardMs ?? null]",
                        json!([]),
                    )
                    .await;
                Some([times[0].as_f64()?, times[1].as_f64()?])
            },
        )
        .await;
        // The step worked before the rest of the page had arrived: a tap on Check token hands
        // the page to the rest (which keeps step 1 while it is being typed into), with the
        // token the probe typed there.
        browser.click("#check-token").await;
        let carried = eventually(
            "the rest of the page to take over step 1",
            Duration::from_secs(60),
            async || {
                browser
                    .eval(
                        "const field = document.getElementById('fly-token');
                     return field && field !== window.__firstField ? field.value : null;",
                        json!([]),
                    )
                    .await
                    .as_str()
                    .map(str::to_string)
            },
        )
        .await;
        assert_eq!(
            carried, "fo1_probe",
            "the token typed before the rest arrived"
        );
        // The bytes each part took: the first (the document, which carries it) and the rest, now
        // that the rest has taken over.
        let bytes = browser
            .eval(
                "const entries = [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')];
                 const size = (rest) => entries.filter((e) => /\\/rest-[^/]*$/.test(e.name) === rest)
                     .reduce((sum, e) => sum + (e.transferSize || 0), 0);
                 return [size(false), size(true)];",
                json!([]),
            )
            .await;
        runs.push([
            home_ms,
            wizard_ms - home_ms,
            bytes[0].as_f64().unwrap_or(0.0),
            bytes[1].as_f64().unwrap_or(0.0),
        ]);
    }
    let median = |i: usize| {
        let mut values: Vec<f64> = runs.iter().map(|run| run[i]).collect();
        values.sort_by(f64::total_cmp);
        values[1]
    };
    let all = |i: usize| {
        runs.iter()
            .map(|run| format!("{:.2}", run[i] / 1000.0))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let figures = format!(
        "page load (Fast-3G-like link, 4x CPU slowdown, gzip, fresh profile, median of 3): home screen working in {:.2} s (runs {}); first wizard step working {:.2} s after a tap at that moment (runs {}); first part {:.1} KB, second part {:.1} KB transferred",
        median(0) / 1000.0,
        all(0),
        median(1) / 1000.0,
        all(1),
        median(2) / 1000.0,
        median(3) / 1000.0,
    );
    println!("{figures}");
    std::fs::create_dir_all(workspace().join("screenshots")).unwrap();
    std::fs::write(workspace().join("screenshots/page-load.txt"), &figures).unwrap();
}

/// Runs in the page before its own scripts (through DevTools, so the page's CSP does not
/// apply): notes when the home screen's New deployment control enters the document and taps
/// it at once, then notes when the wizard's first field is there and types a token into it
/// as a keyboard would (an `input` event), keeping that element to tell the rest's from it.
const LOAD_PROBE: &str = r#"
new MutationObserver((_, observer) => {
  const control = document.getElementById("new-deployment");
  if (window.__homeMs === undefined && control) {
    window.__homeMs = performance.now();
    control.click();
  }
  const field = document.getElementById("fly-token");
  if (window.__homeMs !== undefined && field) {
    window.__wizardMs = performance.now();
    window.__firstField = field;
    field.value = "fo1_probe";
    field.dispatchEvent(new Event("input", { bubbles: true }));
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"#;

/// `name.gz` beside each file, as a CDN would send it to a browser that accepts gzip.
fn gzip_beside_each_file(dir: &Path) {
    use std::io::Write;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&std::fs::read(&path).unwrap()).unwrap();
        let mut gz = path.clone().into_os_string();
        gz.push(".gz");
        std::fs::write(gz, encoder.finish().unwrap()).unwrap();
    }
}
