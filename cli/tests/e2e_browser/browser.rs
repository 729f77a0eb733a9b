//! The browser the tests drive: headless Chromium at a phone's size (360×640), through
//! chromedriver and thirtyfour, with what a person does counted (taps, pastes, typing) for the
//! onboarding figures. Its methods wait the way a person would: for a control to be there and
//! enabled, for text to show, for focus to land.

use super::*;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";

/// Chromium with its own chromedriver and profile; both end with it.
pub struct Browser {
    /// `None` only while dropping: the session ends before chromedriver does.
    session: Option<WebDriver>,
    chromedriver: std::process::Child,
    chromedriver_port: u16,
    shots: PathBuf,
    _profile: tempfile::TempDir,
    /// What the user did, for the onboarding figures: taps (clicks and choices), pastes (a
    /// whole value at once: the secrets) and characters typed by hand.
    effort: std::sync::Mutex<Effort>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Effort {
    pub taps: u32,
    pub pastes: u32,
    pub typed: usize,
}

impl Browser {
    pub async fn start(name: &str) -> Browser {
        let port = sim::testing::free_port();
        let chromedriver = std::process::Command::new(
            std::env::var("CHROMEDRIVER").unwrap_or("/usr/bin/chromedriver".into()),
        )
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver (cargo xtask test installs it)");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = DesiredCapabilities::chrome();
        capabilities
            .set_binary(&std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()))
            .unwrap();
        // A phone's viewport: 360×640 CSS pixels.
        capabilities
            .add_experimental_option(
                "mobileEmulation",
                json!({"deviceMetrics": {"width": 360, "height": 640, "pixelRatio": 2.0}}),
            )
            .unwrap();
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=360,640",
            &format!("--user-data-dir={}", profile.path().display()),
        ] {
            capabilities.add_arg(arg).unwrap();
        }
        // chromedriver takes a moment to listen.
        let server = format!("http://127.0.0.1:{port}");
        let driver = eventually(
            "chromedriver to start",
            Duration::from_secs(20),
            async || WebDriver::new(&server, capabilities.clone()).await.ok(),
        )
        .await;
        let shots = workspace().join("screenshots").join(name);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            session: Some(driver),
            chromedriver,
            chromedriver_port: port,
            shots,
            _profile: profile,
            effort: Default::default(),
        }
    }

    fn driver(&self) -> &WebDriver {
        self.session.as_ref().expect("an open session")
    }

    pub async fn go(&self, url: &str) {
        self.driver().goto(url).await.unwrap();
    }

    pub async fn refresh(&self) {
        self.driver().refresh().await.unwrap();
    }

    /// Runs `script` in the page with `args` (`arguments[0]`, …); its return value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        let args = args.as_array().cloned().unwrap_or_default();
        self.driver()
            .execute(script.to_string(), args)
            .await
            .unwrap()
            .json()
            .clone()
    }

    /// A Chrome DevTools Protocol command (network and CPU emulation, scripts run before the
    /// page's own).
    pub async fn devtools(&self, command: &str, params: Value) -> Value {
        self.driver().cdp().send_raw(command, params).await.unwrap()
    }

    /// Waits until `css` matches an element that is enabled, and returns it.
    pub async fn find(&self, css: &str) -> WebElement {
        eventually_showing(
            &format!("an enabled {css}"),
            Duration::from_secs(60),
            Duration::from_millis(50),
            async || {
                let ready = self
                    .eval(
                        "const e = document.querySelector(arguments[0]); return !!e && !e.disabled;",
                        json!([css]),
                    )
                    .await;
                if ready != json!(true) {
                    return None;
                }
                self.driver().find(By::Css(css)).await.ok()
            },
            async || self.page_text().await,
        )
        .await
    }

    /// What the page shows, as a person reads it.
    pub async fn page_text(&self) -> String {
        // While a document is still being parsed it may have no body yet.
        self.eval("return document.body?.innerText ?? ''", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn effort(&self) -> Effort {
        *self.effort.lock().unwrap()
    }

    pub async fn click(&self, css: &str) {
        self.effort.lock().unwrap().taps += 1;
        // A page that redraws (the chat page when a message arrives, the page's first part
        // handing over to the rest) can replace the element between finding and clicking it:
        // WebDriver then answers "stale element reference", and the click is made again on
        // the new one.
        for _ in 0..5 {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(e) if matches!(e.as_inner(), WebDriverErrorInner::StaleElementReference(_)) => {
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
        panic!("{css} kept being replaced before it could be clicked");
    }

    /// Taps into the field and types `text` by hand (each character counts).
    pub async fn type_into(&self, css: &str, text: &str) {
        {
            let mut effort = self.effort.lock().unwrap();
            effort.taps += 1;
            effort.typed += text.chars().count();
        }
        self.fill(css, text).await;
    }

    /// Pastes `text` (a secret copied from elsewhere: one paste, and the tap into the field).
    pub async fn paste(&self, css: &str, text: &str) {
        {
            let mut effort = self.effort.lock().unwrap();
            effort.pastes += 1;
            effort.taps += 1;
        }
        self.fill(css, text).await;
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.effort.lock().unwrap().taps += 1;
        self.find(css).await;
        self.eval(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([css, value]),
        )
        .await;
    }

    /// Waits until the page's text contains `needle`; returns the text.
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) -> String {
        eventually_showing(
            &format!("the page to show {needle:?}"),
            timeout,
            Duration::from_millis(100),
            async || Some(self.page_text().await).filter(|text| text.contains(needle)),
            async || self.page_text().await,
        )
        .await
    }

    pub async fn shot(&self, name: &str) {
        let png = self.driver().screenshot_as_png().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Presses keys as a keyboard would, into whatever has focus (WebDriver key actions; one
    /// per character, so `"\u{E004}"` is Tab and `"\u{E007}"` Enter).
    pub async fn press(&self, keys: &str) {
        self.driver()
            .action_chain()
            .send_keys(keys)
            .perform()
            .await
            .unwrap();
    }

    /// The focused element: its id, or for an element without one its tag and text.
    pub async fn focused(&self) -> String {
        self.eval(
            "const e = document.activeElement; return e.id || (e.tagName + ' ' + e.textContent.trim());",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until focus is on `expected` (a new screen moves it to its heading once drawn).
    pub async fn wait_for_focus(&self, expected: &str) {
        eventually_showing(
            &format!("focus on {expected}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            async || (self.focused().await == expected).then_some(()),
            async || format!("focus is on {}", self.focused().await),
        )
        .await
    }

    /// Presses Tab once per entry of `order`, checking focus lands on each in turn. Focus is
    /// waited for, not read once: when the page's rest takes over from its first part, the
    /// control with focus is drawn anew and focused again a frame later.
    pub async fn tab_through(&self, order: &[&str]) {
        for expected in order {
            self.press(TAB).await;
            self.wait_for_focus(expected).await;
        }
    }

    /// Switches the browser's network off (`offline`) or back on, through chromedriver's own
    /// network conditions, which hold across reloads and set `navigator.onLine` (thirtyfour
    /// keeps that command only on its deprecated `ChromeDevTools`).
    #[allow(deprecated)]
    pub async fn set_offline(&self, offline: bool) {
        use thirtyfour::extensions::cdp::{ChromeDevTools, NetworkConditions};
        let mut conditions = NetworkConditions::new();
        conditions.offline = offline;
        ChromeDevTools::new(self.driver().handle().clone())
            .set_network_conditions(&conditions)
            .await
            .unwrap();
    }

    /// Every URL the page has requested (resources, fetches).
    pub async fn requested_urls(&self) -> Vec<String> {
        let urls = self.eval("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])", json!([])).await;
        urls.as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect()
    }

    pub async fn local_storage(&self) -> String {
        self.eval(
            "return JSON.stringify(Object.assign({}, localStorage))",
            json!([]),
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver quit Chromium and delete the scoped profile
        // directories it made in /tmp (about 75 MB per test otherwise left behind). Drop
        // cannot await, and thirtyfour's own blocking end waits on this test's runtime (for
        // minutes on a current-thread one), so it is one plain HTTP/1.1 request on loopback.
        if let Some(session) = self.session.take() {
            let id = session.session_id().to_string();
            let _ = session.leak();
            if let Ok(mut stream) =
                std::net::TcpStream::connect(("127.0.0.1", self.chromedriver_port))
            {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}
